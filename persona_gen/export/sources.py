"""Where export reads a run's parts, relative to `<root>/<run_id>/`.

Kept in one place on purpose: the run layout is being moved to a stage recipe, and these
names are all that has to be rewired when it lands.
"""

from __future__ import annotations

MANIFEST = "manifest.json"
PERSONAS = "personas/personas.parquet"
CENSUS_DRAW = "personas/census.parquet"
FIDELITY = "personas/fidelity.json"
"""Where `persona-gen census fidelity --sample <run>/personas/census.parquet` writes by default."""
PROMPTS = "prompts/prompts.parquet"
PAIRS = "feedback/pairs"
VERIFICATION = "feedback/verification"

STAGE_MODEL_KEYS: dict[str, str] = {
    "enrich": "personas.enrich_model",
    "consistency": "personas.judge_model",
    "controversy": "prompts.classifier_model",
    "original": "feedback.model",
    "critique": "feedback.model",
    "revision": "feedback.model",
    "verify": "feedback.judge_model",
}
"""Config key naming each stage's model, for manifests whose stages do not name it."""
