"""The persona attributes drawn from census microdata (PERSONA, arXiv 2407.17387: personas),
under the names every census layout is mapped onto (persona_gen.census.attributes_map).

The persona's other attributes, and their render order, are the persona package's
(persona_gen.personas.attributes), which builds on these.
"""

from __future__ import annotations

CENSUS_ATTRIBUTES: tuple[str, ...] = (
    "age", "sex", "race", "ancestry", "household_language", "education",
    "employment_status", "class_of_worker", "industry_category", "occupation_category",
    "income", "marital_status", "household_type", "family_presence_and_age",
    "place_of_birth", "citizenship", "veteran_status", "disability", "health_insurance",
    "cognitive_difficulty", "ability_to_speak_english", "vision_difficulty", "fertility",
    "hearing_difficulty",
)
CENSUS_EXTRAS: tuple[str, ...] = ("hispanic_origin", "state", "income_decile")
"""Census fields kept for fidelity reports and rule checks, not rendered."""
