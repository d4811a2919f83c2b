"""Where each stage of the feedback job commits its blocks, under `<root>/<run_id>/`."""

from __future__ import annotations

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

# stage name -> (folder of its committed rows, folder of its inputs)
STAGES: dict[str, tuple[str, str]] = {
    "enrich": (PERSONAS_ENRICHED, PERSONAS_ENRICHED + "_input"),
    "consistency": (PERSONAS_CHECKED, PERSONAS_CHECKED + "_input"),
    "controversy": (PROMPTS_CLASSIFIED, PROMPT_CANDIDATES),
    "original": (ORIGINALS, PROMPTS_CLASSIFIED),
    "critique": (CRITIQUES, PLAN),
    "revision": (PAIRS, PLAN),
    "verify": (VERIFICATION, PLAN),
}
