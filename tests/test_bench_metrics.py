"""Bench metrics against values worked out by hand."""

from __future__ import annotations

import math
from math import comb

import pyarrow as pa
import pytest
from sklearn.metrics import cohen_kappa_score

from persona_gen.bench.metrics import (
    bootstrap_std,
    cohen_kappa,
    loo_kappas,
    mode_scores,
    pass_at_k,
)

# ---- Cohen's kappa ----------------------------------------------------------------------


def test_kappa_hand_computed_binary():
    # 10 items. Both say 1 on 4, both 0 on 3, a=1/b=0 on 2, a=0/b=1 on 1.
    a = [1, 1, 1, 1, 0, 0, 0, 1, 1, 0]
    b = [1, 1, 1, 1, 0, 0, 0, 0, 0, 1]
    # p_o = 7/10; a has six 1s, b has five: p_e = .6*.5 + .4*.5 = .5; kappa = .2/.5 = .4
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b))


def test_kappa_letters_and_symmetry():
    a = list("AABBABAB")
    b = list("ABBBAAAB")
    # agree at positions 1,3,4,5,7,8: p_o = 6/8; a and b: 4 A, 4 B -> p_e = .5
    # kappa = (.75 - .5) / .5 = .5
    assert cohen_kappa(a, b) == pytest.approx(0.5)
    assert cohen_kappa(b, a) == pytest.approx(0.5)


def test_kappa_perfect_and_opposite():
    assert cohen_kappa([0, 1, 0, 1], [0, 1, 0, 1]) == pytest.approx(1.0)
    # Complete disagreement with balanced marginals: p_o = 0, p_e = .5 -> -1
    assert cohen_kappa([0, 1, 0, 1], [1, 0, 1, 0]) == pytest.approx(-1.0)


def test_kappa_degenerate_same_constant_is_one():
    # p_e = 1 makes the formula 0/0; our convention: full agreement -> 1.0 (sklearn: nan).
    assert cohen_kappa([1, 1, 1], [1, 1, 1]) == 1.0
    assert cohen_kappa(["A"], ["A"]) == 1.0


def test_kappa_degenerate_different_constants_is_zero():
    # p_o = 0 and p_e = 1*0 + 0*1 = 0 -> 0, not an error.
    assert cohen_kappa([1, 1, 1], [0, 0, 0]) == 0.0


def test_kappa_one_rater_constant():
    # a constant, b varies: p_o = 2/4, p_e = 1*.5 = .5 -> kappa 0
    assert cohen_kappa([1, 1, 1, 1], [1, 0, 1, 0]) == pytest.approx(0.0)


def test_kappa_empty_is_nan_and_mismatch_raises():
    assert math.isnan(cohen_kappa([], []))
    with pytest.raises(ValueError, match="paired"):
        cohen_kappa([1], [1, 0])


# ---- pass@k -----------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "c", "k", "expected"), [
    (2, 1, 1, 0.5),          # one of two correct
    (2, 1, 2, 1.0),          # both drawn: the correct one is among them
    (4, 1, 2, 0.5),          # 1 - C(3,2)/C(4,2) = 1 - 3/6
    (5, 2, 3, 0.9),          # 1 - C(3,3)/C(5,3) = 1 - 1/10
    (10, 0, 5, 0.0),
    (10, 10, 1, 1.0),
    (16, 3, 16, 1.0),
])
def test_pass_at_k_hand_values(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected)


def test_pass_at_k_matches_exact_binomials_and_is_stable_for_large_n():
    for n, c, k in [(20, 3, 5), (50, 7, 16), (100, 1, 10)]:
        exact = 1 - comb(n - c, k) / comb(n, k)
        assert pass_at_k(n, c, k) == pytest.approx(exact, rel=1e-12)
    # C(2000, 1000) overflows a float; the product form does not.
    value = pass_at_k(2000, 1, 1000)
    assert value == pytest.approx(0.5) and math.isfinite(value)


def test_pass_at_k_rejects_bad_arguments():
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)
    with pytest.raises(ValueError):
        pass_at_k(3, 1, 4)


# ---- bootstrap --------------------------------------------------------------------------


def test_bootstrap_is_deterministic_for_a_seed_and_sensible():
    values = [1, 0, 1, 1, 0, 0, 1, 0, 1, 1, 0, 1]
    a = bootstrap_std(values, 2000, seed=7)
    assert a == bootstrap_std(values, 2000, seed=7)
    assert a != bootstrap_std(values, 2000, seed=8)
    # Close to the analytic standard error sqrt(p(1-p)/n) = sqrt(7/12*5/12/12) ~ 0.142
    assert a == pytest.approx(math.sqrt(7 / 12 * 5 / 12 / 12), rel=0.1)
    assert bootstrap_std([1, 1, 1], 100, seed=0) == 0.0
    assert bootstrap_std([1], 100, seed=0) == 0.0
    assert math.isnan(bootstrap_std([], 100, seed=0))


# ---- per-mode scores and leave-one-out kappas -------------------------------------------


def _samples(rows):
    cols = ["model", "mode", "persona_id", "prompt_id", "ablated_attribute", "sample_index",
            "verdict"]
    return pa.Table.from_pylist([dict(zip(cols, r, strict=True)) for r in rows],
                                schema=pa.schema([(c, pa.int8() if c == "verdict" else
                                                   pa.int32() if c == "sample_index" else
                                                   pa.string()) for c in cols]))


def test_cut_samples_count_as_failures_in_accuracy_and_pass_at_k():
    t = _samples([
        ("m", "cot", "p1", "q1", None, 0, 1), ("m", "cot", "p1", "q1", None, 1, None),
        ("m", "cot", "p1", "q2", None, 0, None), ("m", "cot", "p1", "q2", None, 1, 1),
    ])
    # Sample 1 of q1 was cut before its marker; sample 0 of q2 failed in the engine.
    t = t.append_column("cut", pa.array([False, True, False, False]))
    s = mode_scores(t, k=2, bootstrap_samples=50, seed=0)[0]
    assert (s.judged, s.cut, s.failed) == (2, 1, 1)
    assert s.accuracy == pytest.approx(2 / 3)  # the cut sample is in the denominator
    assert s.pass_at_1 == pytest.approx((0.5 + 1.0) / 2)
    assert s.pass_at_k == pytest.approx(1.0)  # only q1 has 2 scored samples, one correct
    # Without the flag the same rows would drop the cut sample: accuracy 1.0.
    assert mode_scores(t.drop_columns(["cut"]), k=2, bootstrap_samples=50, seed=0)[0].accuracy == 1.0


def test_mode_scores_accuracy_and_pass_at_k():
    t = _samples([
        # request p1/q1: samples 1, 0 ; request p1/q2: 0, 0 ; request p2/q1: 1, 1
        ("m", "cot", "p1", "q1", None, 0, 1), ("m", "cot", "p1", "q1", None, 1, 0),
        ("m", "cot", "p1", "q2", None, 0, 0), ("m", "cot", "p1", "q2", None, 1, 0),
        ("m", "cot", "p2", "q1", None, 0, 1), ("m", "cot", "p2", "q1", None, 1, 1),
        # one failed sample (no verdict) and an ablated row that must not count
        ("m", "baseline", "p1", "q1", None, 0, None), ("m", "baseline", "p1", "q1", None, 1, 1),
        ("m", "cot", "p1", "q1", "age", 0, 0),
    ])
    scores = {s.mode: s for s in mode_scores(t, k=2, bootstrap_samples=200, seed=1)}
    cot = scores["cot"]
    assert cot.judged == 6 and cot.failed == 0
    assert cot.accuracy == pytest.approx(3 / 6)
    assert cot.pass_at_1 == pytest.approx((0.5 + 0 + 1) / 3)
    assert cot.pass_at_k == pytest.approx((1 + 0 + 1) / 3)
    base = scores["baseline"]
    assert base.judged == 1 and base.failed == 1 and base.accuracy == 1.0
    assert math.isnan(base.pass_at_k)  # only one judged sample: pass@2 undefined
    again = {s.mode: s for s in mode_scores(t, k=2, bootstrap_samples=200, seed=1)}
    assert again["cot"].bootstrap_std == cot.bootstrap_std > 0


def test_loo_kappa_pairs_twins():
    full = [("m", "output_only", f"p{i}", "q", None, 0, v) for i, v in enumerate([1, 1, 0, 0])]
    age = [("m", "output_only", f"p{i}", "q", "age", 0, v) for i, v in enumerate([1, 1, 0, 0])]
    sex = [("m", "output_only", f"p{i}", "q", "sex", 0, v) for i, v in enumerate([1, 0, 1, 0])]
    out = {r.attribute: r for r in loo_kappas(_samples(full + age + sex), "output_only")}
    assert out["age"].kappa == pytest.approx(1.0) and out["age"].pairs == 4
    # sex: agree on p0, p3 -> p_o = .5, p_e = .5 -> kappa 0
    assert out["sex"].kappa == pytest.approx(0.0) and out["sex"].agreement == pytest.approx(0.5)


def test_pass_at_k_curve_is_monotone_and_the_unbiased_estimator_at_each_k():
    import itertools

    import numpy as np

    from persona_gen.bench.metrics import pass_at_k_curve

    rng = np.random.default_rng(7)
    rows, k_max = [], 8
    for q in range(12):
        p = rng.uniform()
        for s in range(k_max):
            rows.append(("m", "cot", "p1", f"q{q}", None, s, int(rng.uniform() < p)))
    # A request with too few scored samples is left out of every point.
    rows.append(("m", "cot", "p9", "q0", None, 0, 1))
    t = _samples(rows)
    curve = [c for c in pass_at_k_curve(t, k_max) if c.mode == "cot"]
    assert [c.k for c in curve] == list(range(1, k_max + 1))
    assert {c.requests for c in curve} == {12}
    counts = {}
    for _, _, _, qid, _, _, v in rows[:-1]:
        n, c = counts.get(qid, (0, 0))
        counts[qid] = (n + 1, c + v)
    for point in curve:
        # 1 - C(n-c, k) / C(n, k) with exact binomials (math.comb), averaged over requests.
        expected = sum(1 - comb(n - c, point.k) / comb(n, point.k)
                       for n, c in counts.values()) / len(counts)
        assert point.pass_at_k == pytest.approx(expected, abs=1e-12)
    values = [c.pass_at_k for c in curve]
    assert all(a <= b + 1e-12 for a, b in itertools.pairwise(values))
    assert values[-1] > values[0]
    # At k_max it is the accuracy table's pass@k.
    assert mode_scores(t, k=k_max, bootstrap_samples=10, seed=0)[0].pass_at_k == \
        pytest.approx(values[-1])


def test_intersectionality_scores_each_population_on_its_own():
    from persona_gen.bench.intersection import intersection_scores, populations

    people = pa.Table.from_pylist([
        {"persona_id": "a", "sex": "Female", "race": "Black"},
        {"persona_id": "b", "sex": "Female", "race": "Black"},
        {"persona_id": "c", "sex": "Male", "race": "Black"},
        {"persona_id": "d", "sex": "Male", "race": "White"},
        {"persona_id": "e", "sex": "Male", "race": "White"},
        {"persona_id": "f", "sex": None, "race": "White"},  # missing: in no population
    ])
    pops = populations(people, ["sex", "race"], min_personas=2)
    # Male & Black has one persona: below the minimum, left out.
    assert pops == {"sex=Female & race=Black": {"a", "b"}, "sex=Male & race=White": {"d", "e"}}
    verdicts = {"a": [1, 1], "b": [1, 0], "c": [0, 0], "d": [0, 0], "e": [1, 0], "f": [1, 1]}
    rows = [("m", "output_only", pid, "q1", None, s, v)
            for pid, vs in verdicts.items() for s, v in enumerate(vs)]
    rows.append(("m", "output_only", "a", "q1", "sex", 0, 0))  # LOO rows stay out
    scores = {s.population: s for s in intersection_scores(
        _samples(rows), people, [["sex", "race"]], 2, bootstrap_samples=50, seed=0)}
    fb, mw = scores["sex=Female & race=Black"], scores["sex=Male & race=White"]
    assert (fb.personas, fb.samples, fb.accuracy) == (2, 4, 0.75)
    assert (mw.personas, mw.samples, mw.accuracy) == (2, 4, 0.25)
    # The gap is against every persona in some population (a, b, d, e): 4 of 8.
    assert fb.gap == pytest.approx(0.25) and mw.gap == pytest.approx(-0.25)
    assert fb.attributes == "sex x race" and fb.bootstrap_std > 0
