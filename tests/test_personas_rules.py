"""Named consistency rules: each one rejects its failing persona by name and passes a close one.

Labels are the real ACS PUMS (2023 dictionary) or NIST excerpt wordings, or the census
sampler's spelled-out ones (fertility, place of birth without the postal code).
"""

from __future__ import annotations

from typing import Any

import pytest

from persona_gen.personas.rules import RULES, RULES_BY_NAME, violations

# rule name -> (a persona that breaks it, a similar persona that does not)
CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "minor_high_income": (
        {"age": 16, "income": 250_000},           # the paper's example
        {"age": 16, "income": 4_200},
    ),
    "income_under_15": (
        {"age": 12, "income": 3_000},
        {"age": 12, "income": None},
    ),
    "degree_too_young": (
        {"age": 20, "education": "Doctorate degree"},
        {"age": 29, "education": "Doctorate degree"},
    ),
    "married_under_15": (
        {"age": 14, "marital_status": "Now married, spouse present"},
        {"age": 14, "marital_status": "Never married or under 15 years old"},
    ),
    "work_status_under_16": (
        {"age": 13, "employment_status": "Civilian employed, at work"},
        {"age": 13, "employment_status": "N/A (less than 16 years old)"},
    ),
    "employed_never_worked": (
        {"employment_status": "Civilian employed, at work",
         "class_of_worker": "Unemployed and last worked 5 years ago or earlier or never worked"},
        {"employment_status": "Unemployed",
         "class_of_worker": "Unemployed and last worked 5 years ago or earlier or never worked",
         "occupation_category":
             "Unemployed, With No Work Experience In The Last 5 Years Or Earlier Or Never Worked"},
    ),
    "occupation_without_recent_work": (
        {"employment_status": "Not in labor force",
         "class_of_worker": "Unemployed and last worked 5 years ago or earlier or never worked",
         "occupation_category": "MGR-Chief Executives And Legislators"},
        # An unemployed person keeps the occupation of the last job: not a contradiction.
        {"employment_status": "Unemployed",
         "class_of_worker": "Employee of a private for-profit company or business, or of an "
                            "individual, for wages, salary, or commissions",
         "occupation_category": "MGR-Chief Executives And Legislators"},
    ),
    "veteran_under_17": (
        {"age": 15, "veteran_status": "On active duty in the past, but not now"},
        {"age": 19, "veteran_status": "On active duty in the past, but not now"},
    ),
    "armed_forces_never_served": (
        {"employment_status": "Armed forces, at work",
         "veteran_status": "Never served in the military"},
        {"employment_status": "Armed forces, at work", "veteran_status": "Now on active duty"},
    ),
    "fertility_male": (
        {"age": 30, "sex": "Male", "fertility": "Gave birth within the past 12 months"},
        {"age": 30, "sex": "Female", "fertility": "Gave birth within the past 12 months"},
    ),
    "fertility_child_age": (
        {"age": 11, "sex": "Female", "fertility": "Gave birth within the past 12 months"},
        {"age": 11, "sex": "Female", "fertility": "Did not give birth within the past 12 months"},
    ),
    "spouse_present_living_alone": (
        {"marital_status": "Now married, spouse present",
         "household_type": "Nonfamily household: Female householder: Living alone"},
        {"marital_status": "Now married, spouse absent",
         "household_type": "Nonfamily household: Female householder: Living alone"},
    ),
    "english_only_home_limited_english": (
        {"household_language": "English only", "ability_to_speak_english": "Not at all"},
        {"household_language": "Spanish", "ability_to_speak_english": "Not at all"},
    ),
    "birthplace_vs_citizenship": (
        {"place_of_birth": "California", "citizenship": "Not a U.S. citizen"},
        {"place_of_birth": "Mexico", "citizenship": "Not a U.S. citizen"},
    ),
    "retired_too_young": (
        {"age": 27, "detailed_job_description": "Retired after a long career as a welder."},
        {"age": 27, "detailed_job_description": "Welder who is saving for retirement."},
    ),
}


def test_every_rule_has_a_case() -> None:
    assert set(CASES) == set(RULES_BY_NAME)


@pytest.mark.parametrize("name", list(CASES))
def test_rule_rejects_its_case_by_name(name: str) -> None:
    failing, passing = CASES[name]
    assert violations(failing) == [name]
    assert violations(passing) == []


def test_the_papers_example_is_rejected_at_any_six_figure_income() -> None:
    rule = RULES_BY_NAME["minor_high_income"]
    assert rule.check({"age": 17, "income": 100_000})
    assert not rule.check({"age": 18, "income": 400_000})
    assert not rule.check({"age": 17, "income": 99_999})
    assert rule.description.startswith("Under 18 with a six-figure income")


@pytest.mark.parametrize("education, youngest", [
    ("Professional degree beyond a bachelor's degree", 22),
    ("Masters degree", 20),          # NIST spelling
    ("Bachelor's degree", 18),
])
def test_degree_ages(education: str, youngest: int) -> None:
    rule = RULES_BY_NAME["degree_too_young"]
    assert rule.check({"age": youngest - 1, "education": education})
    assert not rule.check({"age": youngest, "education": education})


def test_veteran_labels_from_both_layouts() -> None:
    rule = RULES_BY_NAME["veteran_under_17"]
    assert rule.check({"age": 16, "veteran_status": "10 or 20 percent"})  # NIST DVET rating
    assert rule.check({"age": 16, "veteran_status":
                       "Only on active duty for training in Reserves/National Guard"})
    assert not rule.check({"age": 16, "veteran_status": "Never served in the military"})


def test_missing_values_break_no_rule() -> None:
    assert violations({}) == []
    assert violations({"age": None, "income": None, "education": "N/A (less than 3 years old)"}) == []


def test_census_only_marks_rules_a_resample_can_fix() -> None:
    assert RULES_BY_NAME["minor_high_income"].census_only
    assert not RULES_BY_NAME["retired_too_young"].census_only
    assert all(r.description for r in RULES)
