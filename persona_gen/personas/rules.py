"""Named consistency rules, checked before any model is asked.

Each rule is a small pure function `row -> bool` that is True when the persona breaks it.
Rows are mappings of attribute name -> value (a census row, a partly built persona, or
`Persona.attributes()`). Labels are matched loosely (case-insensitive keywords) because
the official PUMS and the NIST excerpt word the same code differently.

Rules are kept defensible: each names a contradiction in the world, or a combination the
ACS cannot produce because the question is not asked in that universe (e.g. employment is
not asked under 16, fertility only of women aged 15-50). Plausible-but-rare cases (a
jobless person with a large total income, which may be investment or retirement income;
an unemployed person with an occupation, which the ACS records from the last job) are
left to the model judge.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from persona_gen.personas.attributes import CENSUS_ATTRIBUTES
from persona_gen.personas.values import is_missing

Row = Mapping[str, Any]

HIGH_INCOME = 100_000
"""'Six figures': the paper's example conflict is a minor earning this much or more."""


# --- readers ---------------------------------------------------------------------------

def _age(p: Row) -> int | None:
    value = p.get("age")
    if is_missing(value):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _income(p: Row) -> int | None:
    value = p.get("income")
    if is_missing(value):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _label(p: Row, key: str) -> str:
    """Lower-cased label with apostrophes dropped ('Master's' ~ 'Masters'); '' if missing."""
    value = p.get(key)
    return "" if is_missing(value) else str(value).casefold().replace("'", "").replace("’", "")


def _younger_than(p: Row, years: int) -> bool:
    age = _age(p)
    return age is not None and age < years


# --- label meanings --------------------------------------------------------------------

def _employed(status: str) -> bool:
    """'Civilian employed, ...' or 'Armed forces, at work/with a job' (not 'Unemployed')."""
    return ("employed" in status and "unemployed" not in status) or "armed forces" in status


def _no_recent_work(class_of_worker: str) -> bool:
    """ACS COW 9: unemployed and last worked 5+ years ago, or never worked."""
    return "never worked" in class_of_worker or "5 years ago" in class_of_worker


def _served(veteran: str) -> bool:
    """Any military service: active duty now or before, Reserves/Guard training, or a
    service-connected disability rating (the NIST excerpt's DVET)."""
    if not veteran or any(
        neg in veteran for neg in ("never served", "non-veteran", "nonveteran", "not a veteran")
    ):
        return False
    return any(
        pos in veteran
        for pos in ("active duty", "reserve", "national guard", "veteran", "percent", "served")
    )


def _gave_birth(fertility: str) -> bool:
    """FER = yes: gave birth within the past 12 months."""
    if not fertility or fertility.startswith("no") or "did not" in fertility:
        return False
    return fertility.startswith("yes") or "gave birth" in fertility or "birth in the past" in fertility


def _ever_married(marital: str) -> bool:
    if not marital or "never married" in marital:
        return False
    return any(w in marital for w in ("married", "widowed", "divorced", "separated"))


_DEGREE_MIN_AGE: tuple[tuple[str, int], ...] = (
    # Checked in this order: 'professional degree beyond a bachelors' must not read as a BA.
    ("doctorate", 22),
    ("professional degree", 22),
    ("master", 20),
    ("bachelor", 18),
)

_US_STATES = frozenset(
    s.casefold() for s in (
        "Alabama", "Alaska", "Arizona", "Arkansas", "California", "Colorado", "Connecticut",
        "Delaware", "District of Columbia", "Florida", "Georgia", "Hawaii", "Idaho",
        "Illinois", "Indiana", "Iowa", "Kansas", "Kentucky", "Louisiana", "Maine",
        "Maryland", "Massachusetts", "Michigan", "Minnesota", "Mississippi", "Missouri",
        "Montana", "Nebraska", "Nevada", "New Hampshire", "New Jersey", "New Mexico",
        "New York", "North Carolina", "North Dakota", "Ohio", "Oklahoma", "Oregon",
        "Pennsylvania", "Rhode Island", "South Carolina", "South Dakota", "Tennessee",
        "Texas", "Utah", "Vermont", "Virginia", "Washington", "West Virginia", "Wisconsin",
        "Wyoming",
    )
)


def _born_in_us_state(place: str) -> bool:
    """PUMS POBP labels look like 'California/CA'; NATIVITY-style 'Native' also counts."""
    if not place:
        return False
    if place in ("native", "native born", "born in the united states"):
        return True
    return place.split("/", 1)[0].strip() in _US_STATES


# --- the rules -------------------------------------------------------------------------

def minor_high_income(p: Row) -> bool:
    """Under 18 with a six-figure income (the paper's example)."""
    income = _income(p)
    return _younger_than(p, 18) and income is not None and income >= HIGH_INCOME


def income_under_15(p: Row) -> bool:
    """Any non-zero income under 15: the ACS asks income only of people 15 and over."""
    income = _income(p)
    return _younger_than(p, 15) and income is not None and income != 0


def degree_too_young(p: Row) -> bool:
    """A degree earlier than it can realistically be earned (doctorate under 22, ...)."""
    education = _label(p, "education")
    age = _age(p)
    if not education or age is None:
        return False
    for keyword, min_age in _DEGREE_MIN_AGE:
        if keyword in education:
            return age < min_age
    return False


def married_under_15(p: Row) -> bool:
    """Married, widowed, divorced or separated under 15 (ACS: 'never married or under 15')."""
    return _younger_than(p, 15) and _ever_married(_label(p, "marital_status"))


def work_status_under_16(p: Row) -> bool:
    """An employment status or class of worker under 16, where the ACS asks neither."""
    has_work_fields = bool(_label(p, "employment_status") or _label(p, "class_of_worker"))
    return _younger_than(p, 16) and has_work_fields


def employed_never_worked(p: Row) -> bool:
    """At work now, yet 'last worked 5+ years ago or never worked' as class of worker."""
    return _employed(_label(p, "employment_status")) and _no_recent_work(_label(p, "class_of_worker"))


def occupation_without_recent_work(p: Row) -> bool:
    """A specific occupation while class of worker says no work in 5 years or never.

    The ACS codes such people to its own 'unemployed, no work experience in the last 5
    years or never worked' occupation, so any other occupation contradicts it.
    """
    occupation = _label(p, "occupation_category")
    if not occupation or not _no_recent_work(_label(p, "class_of_worker")):
        return False
    return not any(w in occupation for w in ("unemployed", "never worked", "no work experience"))


def veteran_under_17(p: Row) -> bool:
    """Military service under 17 (the ACS asks from 17; enlistment starts at 17)."""
    return _younger_than(p, 17) and _served(_label(p, "veteran_status"))


def armed_forces_never_served(p: Row) -> bool:
    """In the armed forces now, yet 'never served in the military'."""
    return "armed forces" in _label(p, "employment_status") and "never served" in _label(
        p, "veteran_status"
    )


def fertility_male(p: Row) -> bool:
    """A man who gave birth in the past year (the ACS asks women 15-50 only)."""
    sex = _label(p, "sex")
    return sex.startswith("male") and _gave_birth(_label(p, "fertility"))


def fertility_child_age(p: Row) -> bool:
    """Gave birth in the past year while under 15 (outside the ACS fertility universe)."""
    return _younger_than(p, 15) and _gave_birth(_label(p, "fertility"))


def spouse_present_living_alone(p: Row) -> bool:
    """'Now married, spouse present' while the household is someone living alone."""
    return "spouse present" in _label(p, "marital_status") and "living alone" in _label(
        p, "household_type"
    )


def english_only_home_limited_english(p: Row) -> bool:
    """An English-only household, yet this member speaks English 'not well' or 'not at all'."""
    english = _label(p, "ability_to_speak_english")
    limited = english.startswith("not well") or english.startswith("not at all")
    return "english only" in _label(p, "household_language") and limited


def birthplace_vs_citizenship(p: Row) -> bool:
    """Born in a US state but 'not a citizen', or 'born in the United States' but foreign born."""
    citizenship = _label(p, "citizenship")
    place = _label(p, "place_of_birth")
    if not citizenship or not place:
        return False
    if "not a" in citizenship and "citizen" in citizenship:
        return _born_in_us_state(place)
    if "born in the united states" in citizenship or "born in the u.s" in citizenship:
        return "foreign" in place
    return False


_RETIRED = re.compile(r"\b(retired|retiree)\b", re.IGNORECASE)


def retired_too_young(p: Row) -> bool:
    """A model-written job description calls someone under 35 retired."""
    job = p.get("detailed_job_description")
    return _younger_than(p, 35) and isinstance(job, str) and bool(_RETIRED.search(job))


# --- registry --------------------------------------------------------------------------

@dataclass(frozen=True)
class Rule:
    name: str
    check: Callable[[Row], bool]
    fields: tuple[str, ...]
    """The attributes the rule reads."""

    @property
    def description(self) -> str:
        return (self.check.__doc__ or "").strip().splitlines()[0]

    @property
    def census_only(self) -> bool:
        """True when only census fields are read: new traits or model text cannot fix it."""
        return set(self.fields) <= set(CENSUS_ATTRIBUTES)


RULES: tuple[Rule, ...] = (
    Rule("minor_high_income", minor_high_income, ("age", "income")),
    Rule("income_under_15", income_under_15, ("age", "income")),
    Rule("degree_too_young", degree_too_young, ("age", "education")),
    Rule("married_under_15", married_under_15, ("age", "marital_status")),
    Rule("work_status_under_16", work_status_under_16,
         ("age", "employment_status", "class_of_worker")),
    Rule("employed_never_worked", employed_never_worked, ("employment_status", "class_of_worker")),
    Rule("occupation_without_recent_work", occupation_without_recent_work,
         ("class_of_worker", "occupation_category")),
    Rule("veteran_under_17", veteran_under_17, ("age", "veteran_status")),
    Rule("armed_forces_never_served", armed_forces_never_served,
         ("employment_status", "veteran_status")),
    Rule("fertility_male", fertility_male, ("sex", "fertility")),
    Rule("fertility_child_age", fertility_child_age, ("age", "fertility")),
    Rule("spouse_present_living_alone", spouse_present_living_alone,
         ("marital_status", "household_type")),
    Rule("english_only_home_limited_english", english_only_home_limited_english,
         ("household_language", "ability_to_speak_english")),
    Rule("birthplace_vs_citizenship", birthplace_vs_citizenship, ("citizenship", "place_of_birth")),
    Rule("retired_too_young", retired_too_young, ("age", "detailed_job_description")),
)
RULES_BY_NAME: dict[str, Rule] = {r.name: r for r in RULES}
assert len(RULES_BY_NAME) == len(RULES)


def violations(p: Row, rules: tuple[Rule, ...] = RULES) -> list[str]:
    """Names of the rules this persona breaks, in registry order."""
    return [r.name for r in rules if r.check(p)]
