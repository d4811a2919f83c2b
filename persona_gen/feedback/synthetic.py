"""Synthetic inputs for the feedback stages: ids-only personas and prompts at any scale.

Used to size runs, benchmark the pipeline's own overhead (with the no-model `echo`
engine) and test resumption, without a census file or a model in the loop.
"""

from __future__ import annotations

import pyarrow as pa

from persona_gen.feedback import folders as F
from persona_gen.plan.assign import build_plan
from persona_gen.plan.config import PlanConfig
from persona_gen.plan.ids import synthetic_ids
from persona_gen.storage import objects
from persona_gen.storage.layout import RunLayout


def write_synthetic_inputs(layout: RunLayout, n_personas: int, n_prompts: int, seed: int,
                           plan_cfg: PlanConfig, block_size: int, heldout_fraction: float = 868 / 3868,
                           persona_words: int = 120) -> int:
    """Personas, prompts, originals and the plan for a synthetic run; returns planned pairs."""
    persona_ids = synthetic_ids("persona", n_personas)
    prompt_ids = synthetic_ids("prompt", n_prompts)
    n_heldout = round(n_prompts * heldout_fraction)
    filler = " ".join(f"detail{i}" for i in range(persona_words))
    objects.write_table_atomic(layout.base.child(F.PERSONAS_FILE), pa.table({
        "persona_id": persona_ids,
        "persona_text": [f"persona_id: {p}\nbackground: {filler}" for p in persona_ids],
    }))
    splits = ["heldout" if i < n_heldout else "train" for i in range(n_prompts)]
    objects.write_table_atomic(layout.base.child(F.PROMPTS_FILE), pa.table({
        "prompt_id": prompt_ids,
        "text": [f"Question {p}: should people weigh duty over freedom?" for p in prompt_ids],
        "split": splits,
    }))
    objects.write_table_atomic(layout.base.child(F.ORIGINALS, "part-00000.parquet"), pa.table({
        "prompt_id": prompt_ids,
        "original": [f"A general answer to {p}, " + "with several balanced points. " * 8
                     for p in prompt_ids],
    }))
    train = [p for p, s in zip(prompt_ids, splits, strict=True) if s == "train"]
    heldout = [p for p, s in zip(prompt_ids, splits, strict=True) if s == "heldout"]
    plan = build_plan(persona_ids, train, heldout, plan_cfg, seed)
    for i, start in enumerate(range(0, plan.num_rows, block_size)):
        objects.write_table_atomic(layout.base.child(F.PLAN, f"part-{i:05d}.parquet"),
                                   plan.slice(start, block_size))
    return plan.num_rows
