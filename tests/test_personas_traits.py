"""Procedural parts of personas: Big Five, curated lists, draws, splits, record, rendering."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from pydantic import ValidationError

from persona_gen.personas.attributes import PERSONA_ATTRIBUTES
from persona_gen.personas.big_five import (
    CUT_POINTS,
    LEVELS,
    TRAITS,
    BigFive,
    level_for_z,
    level_probabilities,
    sample_big_five,
)
from persona_gen.personas.config import PersonasConfig
from persona_gen.personas.lists import load_lists, parse_list, read_list
from persona_gen.personas.procedural import add_procedural, draw_procedural
from persona_gen.personas.record import Persona, Provenance
from persona_gen.personas.render import render_persona
from persona_gen.personas.split import assign_splits

# --- Big Five ------------------------------------------------------------------------------


def test_level_for_z_uses_the_cut_points() -> None:
    assert [level_for_z(z) for z in (-2.0, -1.0, 0.0, 1.0, 2.0)] == list(LEVELS)
    # Bands are closed on the left: a cut-point belongs to the level above it.
    assert [level_for_z(c) for c in CUT_POINTS] == list(LEVELS[1:])


def test_level_probabilities_are_the_normal_bands() -> None:
    p = level_probabilities()
    assert sum(p.values()) == pytest.approx(1.0)
    assert p["Average"] == pytest.approx(0.3829, abs=1e-3)
    assert p["High"] == pytest.approx(p["Low"]) == pytest.approx(0.2417, abs=1e-3)
    assert p["Extremely High"] == pytest.approx(0.0668, abs=1e-3)


def test_sampled_levels_follow_the_norm_frequencies() -> None:
    rng = np.random.default_rng(7)
    draws = [sample_big_five(rng) for _ in range(6000)]
    expected = level_probabilities()
    for trait in TRAITS:
        levels = [getattr(d, trait.lower()) for d in draws]
        for level, p in expected.items():
            assert levels.count(level) / len(levels) == pytest.approx(p, abs=0.025), (trait, level)


def test_big_five_renders_and_parses_back() -> None:
    b = BigFive(openness="High", conscientiousness="Average", extraversion="Extremely Low",
                agreeableness="Low", neuroticism="Extremely High")
    text = b.render()
    assert text == ("Openness: High, Conscientiousness: Average, Extraversion: Extremely Low, "
                    "Agreeableness: Low, Neuroticism: Extremely High")
    assert BigFive.parse(text) == b
    with pytest.raises(ValueError):
        BigFive.parse("Openness: Very High, Conscientiousness: Average")


# --- curated lists -------------------------------------------------------------------------


def test_curated_lists_are_big_enough_and_distinct() -> None:
    lists = load_lists()
    assert len(lists.core_values) >= 60
    assert len(lists.quirks) >= 100
    assert len(lists.mannerisms) >= 100
    assert len(lists.categories) >= 12
    for items in (lists.core_values, lists.quirks, lists.mannerisms, lists.categories):
        folded = [i.casefold() for i in items]
        assert len(set(folded)) == len(folded)
        assert all(";" not in i and i == i.strip() and i for i in items)
    # A quirk is not also a mannerism.
    assert not {q.casefold() for q in lists.quirks} & {m.casefold() for m in lists.mannerisms}


def test_parse_list_rejects_duplicates_and_separators() -> None:
    assert parse_list("# comment\nA\n\nB\n") == ("A", "B")
    with pytest.raises(ValueError, match="duplicate"):
        parse_list("Honesty\nhonesty\n", "x.txt")
    with pytest.raises(ValueError, match="';'"):
        parse_list("one; two\n")
    assert read_list("categories.txt")[0] == "Lifestyle"


# --- procedural draws ----------------------------------------------------------------------


def test_draws_are_per_persona_and_reproducible() -> None:
    cfg = PersonasConfig(n_core_values=4, n_categories=3)
    lists = load_lists()
    a = draw_procedural("p1", 5, 0, lists, cfg)
    assert a == draw_procedural("p1", 5, 0, lists, cfg)
    assert a != draw_procedural("p1", 5, 1, lists, cfg)  # a resample redraws
    assert a != draw_procedural("p2", 5, 0, lists, cfg)
    assert len(a["core_values"]) == 4 and len(set(a["core_values"])) == 4
    assert len(a["categories"]) == 3
    assert a["defining_quirks"] in lists.quirks and a["mannerisms"] in lists.mannerisms
    BigFive.parse(a["big_five_scores"])


def test_add_procedural_does_not_depend_on_batching() -> None:
    cfg = PersonasConfig()
    lists = load_lists()
    people = pa.table({"persona_id": [f"p{i}" for i in range(6)], "age": pa.array([30] * 6, pa.int32())})
    whole = add_procedural(people, 3, 0, lists, cfg)
    halves = pa.concat_tables([add_procedural(people.slice(0, 3), 3, 0, lists, cfg),
                               add_procedural(people.slice(3), 3, 0, lists, cfg)])
    assert whole.equals(halves)
    assert whole.column("attempt").to_pylist() == [0] * 6


# --- splits --------------------------------------------------------------------------------


def test_split_matches_the_paper_and_is_stable() -> None:
    ids = [f"p{i:05d}" for i in range(1586)]
    splits = assign_splits(ids, PersonasConfig().test_fraction, seed=11)
    assert sum(v == "test" for v in splits.values()) == 586
    assert assign_splits(list(reversed(ids)), 586 / 1586, seed=11) == splits
    assert assign_splits(ids, 586 / 1586, seed=12) != splits
    with pytest.raises(ValueError):
        assign_splits(["a", "a"], 0.5, seed=1)


# --- record and rendering ------------------------------------------------------------------


def _persona(**over: object) -> Persona:
    values: dict[str, object] = {
        "persona_id": "p1", "split": "train", "age": 41, "sex": "Female",
        "education": "Master's degree", "income": 72500, "fertility": None,
        "big_five_scores": BigFive(openness="High", conscientiousness="Average",
                                   extraversion="Low", agreeableness="High",
                                   neuroticism="Average").render(),
        "defining_quirks": "Keeps a daily weather journal",
        "mannerisms": "Holds a mug with both hands",
        "detailed_job_description": "Teaches chemistry\nat a public high school.",
        "core_values": ["Honesty"], "categories": ["Travel"], "persona_text": "",
        "provenance": Provenance(source="s.csv", record_id="r1", seed=9),
    }
    values.update(over)
    return Persona.model_validate(values)


def test_persona_record_round_trips_through_a_row() -> None:
    p = _persona()
    row = p.to_row()
    assert row["persona_seed"] == 9 and row["record_id"] == "r1"
    assert Persona.from_row(row) == p
    assert p.big_five.openness == "High"


def test_persona_record_rejects_bad_values() -> None:
    with pytest.raises(ValidationError):
        _persona(split="dev")
    with pytest.raises(ValidationError):
        _persona(big_five_scores="Openness: Enormous")
    with pytest.raises(ValidationError):
        _persona(favourite_color="blue")  # unknown keys are errors


def test_render_is_ordered_skips_missing_and_formats_income() -> None:
    text = render_persona(_persona(household_language="N/A (GQ/vacant)", race=""))
    lines = text.splitlines()
    keys = [line.split(":", 1)[0] for line in lines]
    assert keys == [k for k in PERSONA_ATTRIBUTES if k in keys]  # canonical order
    assert "fertility" not in keys and "household_language" not in keys and "race" not in keys
    assert "income: $72,500" in lines
    assert "detailed_job_description: Teaches chemistry at a public high school." in lines
    assert lines[0] == "age: 41"


def test_render_accepts_rows_and_subsets() -> None:
    row = {"age": 16, "income": -2500, "sex": "Male", "religion": "Lutheran"}
    assert render_persona(row) == "age: 16\nsex: Male\nincome: -$2,500\nreligion: Lutheran"
    assert render_persona(row, attributes=("religion", "age")) == "age: 16\nreligion: Lutheran"
