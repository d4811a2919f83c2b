"""Where export reads a run's parts: the names the run's recipe declares."""

from __future__ import annotations

from typing import Any

from persona_gen.run import recipe as R

MANIFEST = "manifest.json"
PERSONAS = R.PERSONAS
CENSUS_DRAW = R.CENSUS_DRAW
FIDELITY = R.FIDELITY
PROMPTS = R.PROMPTS
PAIRS = R.stage("revision").writes
VERIFICATION = R.stage("verify").writes

JOB_STAGES: tuple[str, ...] = tuple(s.name for s in R.all_stages() if s.phase != "bench")
"""The run's model stages, in the order it runs them."""


def stage_model(manifest: dict[str, Any], stage: str) -> str | None:
    """The model a stage ran with: its resolved settings in the manifest, or, for manifests
    written before those were recorded, its config read as today's (older keys too)."""
    recorded = (manifest.get("settings") or {}).get(stage) or {}
    if recorded.get("model"):
        return str(recorded["model"])
    if stage not in JOB_STAGES:
        return None
    from persona_gen.errors import UserError
    from persona_gen.run.config import normalized

    try:
        return R.stage(stage).model(normalized(manifest.get("config") or {}))
    except UserError:
        return None
