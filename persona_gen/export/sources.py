"""Where export reads a run's parts: the names the run's recipe declares."""

from __future__ import annotations

from persona_gen.run import recipe as R

MANIFEST = "manifest.json"
PERSONAS = R.PERSONAS
CENSUS_DRAW = R.CENSUS_DRAW
FIDELITY = "personas/fidelity.json"
"""Where `persona-gen census fidelity --sample <run>/personas/census.parquet` writes by default."""
PROMPTS = R.PROMPTS
PAIRS = R.stage("revision").writes
VERIFICATION = R.stage("verify").writes

STAGE_MODEL_KEYS: dict[str, str] = {s.name: s.model_key for s in R.all_stages()
                                    if s.phase != "bench"}
"""Config key naming each stage's model, for manifests whose stages do not name it."""
