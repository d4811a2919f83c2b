"""`census fidelity`: TVD per attribute against the weighted population, JSON + PNG output."""

from __future__ import annotations

import json
import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_census_pums import person, write_person_csv
from typer.testing import CliRunner

from persona_gen.census.fidelity import (
    fidelity_report,
    kept_sample,
    noise_band,
    noise_floor,
    tvd,
)
from persona_gen.census.sample import sample_people
from persona_gen.cli.main import app, main

runner = CliRunner()


@pytest.fixture(scope="module")
def sample_file(census_dir, tmp_path_factory) -> tuple[str, str]:
    national = str(census_dir / "nist-acs-2019" / "national2019.csv")
    out = tmp_path_factory.mktemp("fid") / "personas.parquet"
    res = runner.invoke(app, ["census", "sample", "--source", national, "--n", "400",
                              "--seed", "2", "--to", str(out)])
    assert res.exit_code == 0, res.output
    return national, str(out)


def test_cli_prints_and_writes_json_and_charts(sample_file, tmp_path):
    national, sample = sample_file
    res = runner.invoke(app, ["census", "fidelity", "--source", national, "--sample", sample,
                              "--to", str(tmp_path / "report")])
    assert res.exit_code == 0, res.output
    assert "population: 22,062 records" in res.output
    assert "not compared (the layout lacks it): ancestry" in res.output
    report = json.loads((tmp_path / "report" / "fidelity.json").read_text())
    by_attr = {a["attribute"]: a for a in report["attributes"]}
    assert {"sex", "race", "age", "education", "income_decile", "state"} <= set(by_attr)
    assert "occupation_category" in report["not_compared"]
    for a in by_attr.values():
        assert 0 <= a["tvd"] <= 1
        assert math.isclose(sum(c["population"] for c in a["categories"]), 1, abs_tol=1e-4)
        assert math.isclose(sum(c["sample"] for c in a["categories"]), 1, abs_tol=1e-4)
        # Flagged against sampling noise, not a fixed cap: above the 95th percentile of an
        # ideal weighted draw of the same n.
        assert a["noise_floor"] < a["noise_p95"] or a["noise_p95"] == 0
        assert a["flagged"] == (a["tvd"] > a["noise_p95"])
        assert f"{a['attribute']}" in res.output
    assert [c["label"] for c in by_attr["age"]["categories"]][:2] == ["10-19", "20-29"]
    for name in ("fidelity_tvd.png", "fidelity_distributions.png"):
        assert (tmp_path / "report" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_threshold_flags_and_can_fail(sample_file, tmp_path):
    national, sample = sample_file
    res = runner.invoke(app, ["census", "fidelity", "--source", national, "--sample", sample,
                              "--to", str(tmp_path), "--threshold", "0.0001",
                              "--fail-on-flag"])
    assert res.exit_code == 1
    assert "flagged: TVD above the fixed threshold 0.0001" in res.output
    assert "FLAGGED: " in res.output and "ABOVE" in res.output


def test_whole_equal_weight_population_has_zero_distance(census_dir, tmp_path):
    """Labelling on the sample side and the population side agree, attribute by attribute."""
    people = [
        person(PWGTP=7, SEX=str(1 + i % 2), SCHL=f"{16 + i % 6:02d}", LANX=str(1 + i % 2),
               LANP="1200" if i % 2 == 0 else "", ENG="1" if i % 2 == 0 else "",
               ST="56" if i < 9 else "50", AGEP=20 + 3 * i, PINCP=1000 * i)
        for i in range(15)
    ]
    src = write_person_csv(tmp_path / "psam_p56.csv", census_dir, 2023, people)
    table = sample_people([str(src)], n=15, seed=3)
    report = fidelity_report([str(src)], table)
    # Household facts come from the housing file (none here), so they are not compared.
    assert report.not_compared["household_type"] == "the layout lacks it"
    assert report.not_compared["household_language"] == "the layout lacks it"
    for a in report.attributes:
        assert a.tvd == pytest.approx(0, abs=1e-9), a
    lang = next(a for a in report.attributes if a.attribute == "ability_to_speak_english")
    assert {c.label for c in lang.categories} == {"Very well", "Speaks only English"}


def test_sample_without_metadata_is_refused(census_dir, tmp_path, capsys):
    plain = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"age": [1, 2]}), plain)
    with pytest.raises(SystemExit) as exc:
        main(["census", "fidelity", "--source",
              str(census_dir / "nist-acs-2019" / "ma2019.csv"), "--sample", str(plain)])
    err = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert exc.value.code == 65 and len(err) == 1
    assert err[0].startswith(f"error: {plain}: not a census sample")


def test_tvd_and_noise_floor():
    assert tvd({"a": 0.5, "b": 0.5}, {"a": 0.5, "b": 0.5}) == 0
    assert tvd({"a": 1.0}, {"b": 1.0}) == 1
    assert tvd({"a": 0.6, "b": 0.4}, {"a": 0.5, "b": 0.5}) == pytest.approx(0.1)
    assert noise_floor({"a": 0.5, "b": 0.5}, 100) == pytest.approx(
        math.sqrt(2 * 0.25 / (math.pi * 100)))


def test_noise_band_matches_the_normal_formula_and_is_seeded():
    """The simulated band's mean agrees with the normal approximation of an ideal draw's
    expected TVD; the 95th percentile lies above it; the same seed gives the same band."""
    population = {str(k): w for k, w in enumerate([30, 20, 15, 10, 8, 7, 5, 3, 1, 1])}
    total = sum(population.values())
    shares = {k: v / total for k, v in population.items()}
    mean, p95 = noise_band(shares, 1586, attribute="x")
    assert mean == pytest.approx(noise_floor(shares, 1586), rel=0.1)
    assert 0.02 < mean < p95 < 0.06
    assert noise_band(shares, 1586, attribute="x") == (mean, p95)
    assert noise_band(shares, 1586, attribute="y") != (mean, p95)
    # A larger draw lands closer: its band is narrower.
    assert noise_band(shares, 15_860, attribute="x")[1] < p95 / 2


def test_an_attribute_is_flagged_only_above_its_noise_band(census_dir):
    """An honest draw of 400 stays within its band on most attributes; the same draw with
    every woman left out is flagged on sex, by the band alone."""
    national = str(census_dir / "nist-acs-2019" / "national2019.csv")
    draw = sample_people([national], n=800, seed=5)
    honest = fidelity_report([national], draw.slice(0, 400))
    assert honest.threshold is None and "95th percentile" in honest.rule
    assert len(honest.flagged) <= 2
    men = draw.filter(pa.compute.equal(draw.column("sex"), "Male")).slice(0, 400)
    biased = fidelity_report([national], kept_sample(draw, men), sample_name="men only")
    by = {a.attribute: a for a in biased.attributes}
    assert by["sex"].flagged and by["sex"].tvd > 0.4 > by["sex"].noise_p95
    assert biased.n == men.num_rows
    # The fixed cap is still there, off by default: with it, the cap decides.
    capped = fidelity_report([national], kept_sample(draw, men), threshold=0.9)
    assert capped.flagged == [] and capped.threshold == 0.9
