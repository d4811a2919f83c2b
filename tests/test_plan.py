"""The plan: persona x prompt assignment at the paper's scale, scaling down, stability of
ids and draws, bad inputs, and the `plan` command (run inputs and synthetic ids)."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from persona_gen.cli.main import main
from persona_gen.errors import DataError
from persona_gen.plan.assign import PLAN_SCHEMA, build_plan, pair_counts
from persona_gen.plan.config import PlanConfig
from persona_gen.plan.ids import pair_id, synthetic_ids

PERSONAS = synthetic_ids("persona", 1586)
PROMPTS = synthetic_ids("prompt", 3868)
TRAIN, HELDOUT = PROMPTS[:3000], PROMPTS[3000:]


@pytest.fixture(scope="module")
def paper_plan() -> pa.Table:
    return build_plan(PERSONAS, TRAIN, HELDOUT, PlanConfig(), seed=11)


def test_paper_scale_counts(paper_plan):
    t = paper_plan
    assert t.schema == PLAN_SCHEMA
    assert t.num_rows == 317_200
    qtype = Counter(t.column("question_type").to_pylist())
    assert qtype == {"train": 158_600, "test": 158_600}
    assert set(Counter(t.column("persona_id").to_pylist()).values()) == {200}
    assert pc.sum(t.column("seen")).as_py() == 1586 * 50
    pairs = set(zip(t.column("persona_id").to_pylist(), t.column("prompt_id").to_pylist(),
                    strict=True))
    assert len(pairs) == t.num_rows
    assert len(set(t.column("pair_id").to_pylist())) == t.num_rows


def test_paper_scale_rows_follow_the_rules(paper_plan):
    rows = paper_plan.select(["prompt_id", "question_type", "prompt_split", "seen"]).to_pylist()
    train_set = set(TRAIN)
    for r in rows[:2000]:  # ten personas' worth, every rule on every row
        assert (r["prompt_split"] == "train") == (r["prompt_id"] in train_set)
        if r["question_type"] == "train":
            assert r["prompt_split"] == "train" and not r["seen"]
        elif r["prompt_split"] == "train":
            assert r["seen"]
        else:
            assert not r["seen"]
    per_type = Counter((r["question_type"], r["prompt_split"], r["seen"]) for r in rows)
    assert per_type == {("train", "train", False): 158_600, ("test", "train", True): 79_300,
                        ("test", "heldout", False): 79_300}


def test_rows_are_grouped_by_persona_in_the_given_order(paper_plan):
    personas = paper_plan.column("persona_id").to_pylist()
    runs = [p for i, p in enumerate(personas) if i == 0 or personas[i - 1] != p]
    assert runs == PERSONAS


def test_same_seed_same_plan_other_seed_other_plan(paper_plan):
    again = build_plan(PERSONAS, TRAIN, HELDOUT, PlanConfig(), seed=11)
    assert again.equals(paper_plan)
    other = build_plan(PERSONAS[:50], TRAIN, HELDOUT, PlanConfig(), seed=12)
    assert other.column("prompt_id") != paper_plan.slice(0, other.num_rows).column("prompt_id")


def test_draws_are_spread_evenly_over_prompts(paper_plan):
    # With a fixed seed this is a fixed fact about the plan, not a flaky statistic: each
    # train prompt is expected 1586 * 150 / 3000 = 79.3 times, each held-out one 91.4 times.
    uses = Counter(paper_plan.column("prompt_id").to_pylist())
    train_uses = np.array([uses[p] for p in TRAIN])
    heldout_uses = np.array([uses[p] for p in HELDOUT])
    assert train_uses.min() > 40 and train_uses.max() < 125
    assert heldout_uses.min() > 50 and heldout_uses.max() < 140
    # Which of a persona's train-pool draws become train pairs is not biased by prompt order.
    index = {p: i for i, p in enumerate(TRAIN)}
    t = paper_plan.filter(pc.equal(paper_plan.column("prompt_split"), "train"))
    is_train = np.array(t.column("question_type").to_pylist()) == "train"
    idx = np.array([index[p] for p in t.column("prompt_id").to_pylist()])
    assert abs(idx[is_train].mean() - idx[~is_train].mean()) < 30


def test_a_persona_gets_the_same_prompts_whatever_else_is_in_the_plan(paper_plan):
    some = [PERSONAS[5], PERSONAS[900], PERSONAS[3]]
    small = build_plan(some, TRAIN, HELDOUT, PlanConfig(), seed=11)
    for pid in some:
        mine = small.filter(pc.equal(small.column("persona_id"), pid))
        full = paper_plan.filter(pc.equal(paper_plan.column("persona_id"), pid))
        assert mine.equals(full)
    # Prompt pools given in another order: the same plan.
    shuffled = build_plan(some, TRAIN[::-1], HELDOUT[::-1], PlanConfig(), seed=11)
    assert shuffled.equals(small)


def test_counts_shrink_in_proportion_when_prompts_are_few():
    assert pair_counts(PlanConfig(), 3000, 868) == pair_counts(PlanConfig(), 150, 50)
    c = pair_counts(PlanConfig(), 81, 24)
    assert (c.train, c.seen_test, c.heldout_test) == (54, 27, 24)
    plan = build_plan(synthetic_ids("persona", 40), TRAIN[:81], HELDOUT[:24], PlanConfig(), 0)
    assert plan.num_rows == 40 * 105
    pairs = set(zip(plan.column("persona_id").to_pylist(), plan.column("prompt_id").to_pylist(),
                    strict=True))
    assert len(pairs) == plan.num_rows
    # Every persona uses every prompt exactly once: the pools are exhausted, never repeated.
    per_persona = Counter(plan.column("persona_id").to_pylist())
    assert set(per_persona.values()) == {105}


def test_configured_sizes_and_empty_pools():
    cfg = PlanConfig(train_pairs_per_persona=3, seen_test_pairs_per_persona=2,
                     heldout_test_pairs_per_persona=0)
    plan = build_plan(["a", "b"], ["q1", "q2", "q3", "q4", "q5", "q6"], [], cfg, seed=0)
    assert Counter(plan.column("question_type").to_pylist()) == {"train": 6, "test": 4}
    assert set(plan.column("prompt_split").to_pylist()) == {"train"}


def test_pair_id_is_a_stable_hash():
    assert pair_id("persona-1", "prompt-1") == pair_id("persona-1", "prompt-1")
    assert pair_id("ab", "c") != pair_id("a", "bc")
    # Pinned: pair ids key every output row, across runs and releases.
    assert pair_id("persona-1", "prompt-1") == "7f640619c5a581c4"


def test_draws_are_pinned_for_a_seed():
    # Resumed and repeated runs must plan the same pairs on any machine and NumPy release.
    prompts = synthetic_ids("prompt", 25)
    cfg = PlanConfig(train_pairs_per_persona=3, seen_test_pairs_per_persona=2,
                     heldout_test_pairs_per_persona=2)
    plan = build_plan(["persona-1"], prompts[:20], prompts[20:], cfg, seed=0)
    assert [p[-2:] for p in plan.column("prompt_id").to_pylist()] == [
        "16", "05", "17", "15", "14", "24", "22"]


@pytest.mark.parametrize(("personas", "train", "heldout", "message"), [
    (["a", "a"], ["q1"], ["q2"], "persona_id 'a' appears more than once"),
    (["a"], ["q1", "q1"], ["q2"], "train prompt_id 'q1' appears more than once"),
    (["a"], ["q1"], ["q1"], "prompt_id 'q1' is in both"),
    (["a", ""], ["q1"], ["q2"], "every persona_id must be a non-empty string"),
])
def test_bad_ids_are_data_errors(personas, train, heldout, message):
    with pytest.raises(DataError, match=message):
        build_plan(personas, train, heldout, PlanConfig(), seed=0)


# ---- the command ---------------------------------------------------------------------------

def _cli(args: list[str]) -> int:
    with pytest.raises(SystemExit) as done:
        main(args)
    return int(done.value.code or 0)


def test_plan_command_with_synthetic_ids(tmp_path, capsys):
    out = tmp_path / "plan"
    code = _cli(["plan", "--personas", "30", "--prompts", "100", "--seed", "4", "--to", str(out)])
    assert code == 0, capsys.readouterr().err
    table = pq.read_table(out / "plan.parquet")
    # 100 prompts, 22 held out (868/3868 of them): 78 train prompts -> 52 + 26 pairs, 22 held out.
    expected = build_plan(synthetic_ids("persona", 30), synthetic_ids("prompt", 100)[:78],
                          synthetic_ids("prompt", 100)[78:], PlanConfig(), seed=4)
    assert table.equals(expected)
    assert "seconds to build" in capsys.readouterr().out


@pytest.mark.ray
def test_plan_command_from_a_run(tmp_path, capsys, ray_local):
    root = tmp_path / "runs"
    echo = ["--set", "stages.defaults.model=echo"]
    assert _cli(["prompts", "build", "--set", "stages.controversy.enabled=false", *echo,
                 "--output", str(root), "--run-id", "r1"]) == 0
    personas = [f"pp{i}" for i in range(12)]
    (root / "r1" / "personas").mkdir()
    pq.write_table(pa.table({"persona_id": personas, "age": list(range(12))}),
                   root / "r1" / "personas" / "personas.parquet")
    code = _cli(["plan", "--output", str(root), "--run-id", "r1", *echo,
                 "--set", "stages.controversy.enabled=false",
                 "--set", "plan.train_pairs_per_persona=10",
                 "--set", "plan.seen_test_pairs_per_persona=5",
                 "--set", "plan.heldout_test_pairs_per_persona=5"])
    assert code == 65  # the plan is part of the run, so a changed plan config is refused
    assert "different configuration (plan changed)" in capsys.readouterr().err
    code = _cli(["plan", "--output", str(root), "--run-id", "r1", *echo,
                 "--set", "stages.controversy.enabled=false"])
    assert code == 0, capsys.readouterr().err
    plan = pq.read_table(root / "r1" / "plan")
    prompts = pq.read_table(root / "r1" / "prompts" / "prompts.parquet")
    split = dict(zip(prompts.column("prompt_id").to_pylist(), prompts.column("split").to_pylist(),
                     strict=True))
    assert plan.num_rows == 12 * pair_counts(PlanConfig(), sum(s == "train" for s in split.values()),
                                             sum(s == "heldout" for s in split.values())).total
    assert all(split[p] == s for p, s in zip(plan.column("prompt_id").to_pylist(),
                                            plan.column("prompt_split").to_pylist(), strict=True))
    stats = json.loads((root / "r1" / "prompts" / "stats.json").read_text())
    assert stats["train"] + stats["heldout"] == prompts.num_rows
    assert "pairs" in capsys.readouterr().out


@pytest.mark.parametrize(("args", "message"), [
    (["--personas", "3"], "--personas and --prompts go together"),
    ([], "name the run"),
    (["--run-id", "nothing-here"], "personas.parquet: not found"),
    (["--personas", "3", "--prompts", "9"], "say where to write the plan"),
])
def test_plan_command_errors_are_one_line_exit_2_and_write_nothing(tmp_path, capsys, args,
                                                                   message):
    code = _cli(["plan", "--set", f"run.output={tmp_path}", *args])
    err = capsys.readouterr().err.strip()
    # One line per problem (a run with neither table: one for each).
    assert code == 65 and message in err and all(ln.startswith("error: ")
                                                for ln in err.splitlines())
    assert list(tmp_path.iterdir()) == []
