"""Tiny persona and prompt tables shared by the bench tests (no tests here)."""

from __future__ import annotations

import pyarrow as pa

from persona_gen.bench.config import BenchConfig
from persona_gen.bench.run import BenchStages
from persona_gen.personas.attributes import PERSONA_ATTRIBUTES
from persona_gen.personas.render import render_persona

_PEOPLE = [
    {"persona_id": "p-001", "split": "test", "age": "67", "sex": "Female",
     "education": "Master's degree", "occupation_category": "Retired teacher",
     "religion": "Lutheran, attends weekly", "political_views": "Moderate conservative",
     "fertility": "Has grown children", "personal_time": "Gardening and church choir"},
    {"persona_id": "p-002", "split": "test", "age": "24", "sex": "Male",
     "education": "Some college", "occupation_category": "Warehouse associate",
     "religion": None, "political_views": "Progressive",
     "fertility": None, "personal_time": "Online gaming and weekend football"},
    {"persona_id": "p-003", "split": "train", "age": "45", "sex": "Female",
     "education": "Bachelor's degree", "occupation_category": "Nurse",
     "religion": "Catholic", "political_views": "Independent",
     "fertility": "Two teenagers", "personal_time": "Running"},
]

_PROMPTS = [
    ("q-01", "Should parents be allowed to read their teenager's private messages?", "family", "heldout"),
    ("q-02", "Is it fair that the rich pay a much higher share of their income in taxes?", "money", "heldout"),
    ("q-03", "Should public schools teach about world religions?", "religion", "heldout"),
    ("q-04", "Is remote work better for society than office work?", "work", "train"),
]


def personas_table(n: int | None = None) -> pa.Table:
    rows = []
    for p in _PEOPLE[:n]:
        row = {a: p.get(a) for a in PERSONA_ATTRIBUTES}
        row.update(persona_id=p["persona_id"], split=p["split"])
        row["persona_text"] = render_persona(row)
        rows.append(row)
    schema = pa.schema([("persona_id", pa.string()), ("split", pa.string())]
                       + [(a, pa.string()) for a in PERSONA_ATTRIBUTES]
                       + [("persona_text", pa.string())])
    return pa.Table.from_pylist(rows, schema=schema)


def prompts_table() -> pa.Table:
    return pa.Table.from_pylist([{"prompt_id": i, "text": t, "topic": c, "split": s}
                                 for i, t, c, s in _PROMPTS])


def bench_setup(judge: str = "j", stages: dict | None = None,
                **bench: object) -> tuple[BenchConfig, BenchStages]:
    """A `bench:` section and the bench's two stages as the recipe builds them from a config
    with `stages.bench_judge.model: judge` and any other `stages` given."""
    from persona_gen.run.bench import bench_stages
    from persona_gen.run.config import RunConfig

    sections = {name: dict(s) for name, s in (stages or {}).items()}
    sections.setdefault("bench_judge", {}).setdefault("model", judge)
    cfg = RunConfig.model_validate({"bench": bench, "stages": sections})
    return cfg.bench, bench_stages(cfg)
