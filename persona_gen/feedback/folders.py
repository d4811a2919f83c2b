"""Where each stage of the feedback job commits its blocks, under `<root>/<run_id>/`."""

from __future__ import annotations

from dataclasses import dataclass

PERSONAS_ENRICHED = "personas/enrich"
PERSONAS_CHECKED = "personas/consistency"
PERSONAS_FILE = "personas/personas.parquet"

PROMPT_CANDIDATES = "prompts/candidates"
PROMPTS_CLASSIFIED = "prompts/classified"
PROMPTS_FILE = "prompts/prompts.parquet"

PLAN = "plan"
ORIGINALS = "feedback/originals"
CRITIQUES = "feedback/critiques"
PAIRS = "feedback/pairs"
VERIFICATION = "feedback/verification"

@dataclass(frozen=True)
class StageFolders:
    """Where a stage commits rows, and the input rows it plans to process."""

    out: str
    inputs: str
    inputs_where: tuple[str, str] | None = None
    """Count only input rows whose column equals this value (rows a filter passes on)."""


STAGES: dict[str, StageFolders] = {
    "enrich": StageFolders(PERSONAS_ENRICHED, PERSONAS_ENRICHED + "_input"),
    "consistency": StageFolders(PERSONAS_CHECKED, PERSONAS_CHECKED + "_input"),
    "controversy": StageFolders(PROMPTS_CLASSIFIED, PROMPT_CANDIDATES),
    "original": StageFolders(ORIGINALS, PROMPTS_CLASSIFIED, ("controversy", "controversial")),
    "critique": StageFolders(CRITIQUES, PLAN),
    "revision": StageFolders(PAIRS, PLAN),
    "verify": StageFolders(VERIFICATION, PLAN),
}


def stages_for(config: dict) -> dict[str, StageFolders]:
    """The stages a run with this (resolved, JSON) config has, with the inputs they plan from."""
    prompts = config.get("prompts", {})
    personas = config.get("personas", {})
    stages = dict(STAGES)
    if not prompts.get("classifier_model"):
        del stages["controversy"]
        stages["original"] = StageFolders(ORIGINALS, PROMPT_CANDIDATES)
    if not personas.get("model_consistency_check", True):
        del stages["consistency"]
    if not config.get("feedback", {}).get("verify", True):
        del stages["verify"]
    return stages
