"""Synthetic inputs for the feedback stages: ids-only personas and prompts at any scale.

Used to size runs, benchmark the pipeline's own overhead (with the no-model `echo`
engine) and test resumption, without a census file or a model in the loop.
"""

from __future__ import annotations

import pyarrow as pa

from persona_gen.plan.assign import build_plan
from persona_gen.plan.config import PlanConfig
from persona_gen.plan.ids import synthetic_ids
from persona_gen.run import recipe as R
from persona_gen.run.execute import DONE_MARKER
from persona_gen.storage import objects
from persona_gen.storage.runref import RunRef


def write_synthetic_inputs(run: RunRef, n_personas: int, n_prompts: int, seed: int,
                           plan_cfg: PlanConfig, block_size: int, heldout_fraction: float = 868 / 3868,
                           persona_words: int = 120, original_words: int = 48) -> int:
    """Personas, prompts, originals and the plan for a synthetic run; returns planned pairs."""
    persona_ids = synthetic_ids("persona", n_personas)
    prompt_ids = synthetic_ids("prompt", n_prompts)
    n_heldout = round(n_prompts * heldout_fraction)
    filler = " ".join(f"detail{i}" for i in range(persona_words))
    objects.write_table_atomic(run.child(R.PERSONAS), pa.table({
        "persona_id": persona_ids,
        "persona_text": [f"persona_id: {p}\nbackground: {filler}" for p in persona_ids],
    }))
    splits = ["heldout" if i < n_heldout else "train" for i in range(n_prompts)]
    objects.write_table_atomic(run.child(R.PROMPTS), pa.table({
        "prompt_id": prompt_ids,
        "text": [f"Question {p}: should people weigh duty over freedom?" for p in prompt_ids],
        "split": splits,
    }))
    objects.write_table_atomic(run.child(R.stage("original").writes, "part-00000.parquet"), pa.table({
        "prompt_id": prompt_ids,
        "original": [f"A general answer to {p}, "
                     + "with several balanced points. " * max(1, original_words // 4)
                     for p in prompt_ids],
        "original_finish_reason": ["stop"] * n_prompts,  # the pairs chain looks it up too
    }))
    train = [p for p, s in zip(prompt_ids, splits, strict=True) if s == "train"]
    heldout = [p for p, s in zip(prompt_ids, splits, strict=True) if s == "heldout"]
    plan = build_plan(persona_ids, train, heldout, plan_cfg, seed)
    blocks = 0
    for blocks, start in enumerate(range(0, plan.num_rows, block_size), start=1):
        objects.write_table_atomic(run.child(R.PLAN, f"part-{blocks - 1:05d}.parquet"),
                                   plan.slice(start, block_size))
    objects.write_json_atomic(run.child(R.PLAN, DONE_MARKER),
                              {"blocks": blocks, "rows": plan.num_rows})
    return plan.num_rows
