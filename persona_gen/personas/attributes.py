"""The persona's attributes (PERSONA, arXiv 2407.17387: personas): their names, their order, and where each comes from.

The order here is the render order of `key: value` persona text, used by every prompt.
"""

from __future__ import annotations

# Drawn from census microdata (persona_gen.census maps each layout onto these names).
from persona_gen.census.attributes import CENSUS_ATTRIBUTES, CENSUS_EXTRAS

# Sampled procedurally (population norms, curated lists).
PROCEDURAL_ATTRIBUTES: tuple[str, ...] = ("big_five_scores", "defining_quirks", "mannerisms")
# Written by a language model, conditioned on the rest.
LLM_ATTRIBUTES: tuple[str, ...] = (
    "detailed_job_description", "personal_time", "lifestyle", "ideology", "political_views",
    "religion",
)

# The 33 released attributes, in render order.
PERSONA_ATTRIBUTES: tuple[str, ...] = (
    "age", "sex", "race", "ancestry", "household_language", "education",
    "employment_status", "class_of_worker", "industry_category", "occupation_category",
    "detailed_job_description", "income", "marital_status", "household_type",
    "family_presence_and_age", "place_of_birth", "citizenship", "veteran_status",
    "disability", "health_insurance", "big_five_scores", "defining_quirks", "mannerisms",
    "personal_time", "lifestyle", "ideology", "political_views", "religion",
    "cognitive_difficulty", "ability_to_speak_english", "vision_difficulty", "fertility",
    "hearing_difficulty",
)

assert len(PERSONA_ATTRIBUTES) == 33
assert set(PERSONA_ATTRIBUTES) == set(CENSUS_ATTRIBUTES) | set(PROCEDURAL_ATTRIBUTES) | set(
    LLM_ATTRIBUTES
)

__all__ = ["CENSUS_ATTRIBUTES", "CENSUS_EXTRAS", "LLM_ATTRIBUTES", "PERSONA_ATTRIBUTES",
           "PROCEDURAL_ATTRIBUTES"]
