"""The bench request table (pure): models x modes x personas x prompts, plus leave-one-out rows.

One row is one answer request for `k` samples. Columns:
request_id, model, mode, persona_id, prompt_id, ablated_attribute (null for the full
persona), question, persona_text (the persona the judge role-plays: the full one, or in LOO
rows with loo_judge_persona=reduced the ablated one), judge_persona ('full' | 'reduced'),
answer_persona_text (what the model under test sees: null in baseline, the ablated text in
LOO rows), k, seed, study ('main': the bench grid; 'loo': a leave-one-out row, or a
full-persona twin the grid lacks, which accuracy leaves out so every mode scores the same items).

Rows are sorted by model, persona, ablation, mode, prompt so that consecutive requests
share their persona prefix (prefix caching) and one model's rows are contiguous.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import pyarrow as pa

from persona_gen.bench.ablation import (
    ALL_REMOVED,
    Renderer,
    ablated_text,
    all_removed_text,
    default_renderer,
    full_text,
)
from persona_gen.bench.config import BenchConfig, Mode
from persona_gen.bench.ids import answer_seed, request_id
from persona_gen.bench.modes import uses_persona
from persona_gen.errors import DataError

REQUEST_SCHEMA = pa.schema([
    ("request_id", pa.string()),
    ("model", pa.string()),
    ("mode", pa.string()),
    ("persona_id", pa.string()),
    ("prompt_id", pa.string()),
    ("ablated_attribute", pa.string()),
    ("question", pa.string()),
    ("persona_text", pa.string()),
    ("judge_persona", pa.string()),
    ("answer_persona_text", pa.string()),
    ("k", pa.int32()),
    ("seed", pa.int64()),
    ("study", pa.string()),
])

_PERSONA_COLUMNS = ("persona_id",)
_PROMPT_COLUMNS = ("prompt_id", "text")


def _require(table: pa.Table, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise DataError(f"{what} table lacks column(s) {missing}", source=what)


def select(table: pa.Table, id_column: str, split: str | None, limit: int | None,
           seed: int) -> list[dict[str, Any]]:
    """Rows of `split` (all when None), a seeded random `limit` of them, in a seeded order.

    The order matters: leave-one-out takes a prefix of it, so its personas and prompts are
    a random subset of the main ones rather than the alphabetically first.
    """
    rows = table.to_pylist()
    if split is not None:
        if "split" not in table.column_names:
            raise DataError(f"cannot select split '{split}': no split column", source=id_column)
        rows = [r for r in rows if r.get("split") == split]
    rows.sort(key=lambda r: str(r[id_column]))  # input order must not matter
    order = np.random.default_rng([seed, zlib.crc32(id_column.encode())]).permutation(len(rows))
    picked = [rows[i] for i in order]
    return picked[:limit] if limit is not None else picked


def prompts_for(persona_id: str, prompt_rows: list[dict[str, Any]], count: int | None,
                seed: int) -> list[dict[str, Any]]:
    """The persona's own seeded sample of `count` prompts (all when None or more than there
    are), in the selection's order; the same persona gets the same sample on every run."""
    if count is None or count >= len(prompt_rows):
        return prompt_rows
    rng = np.random.default_rng([seed, zlib.crc32(b"prompts_per_persona"),
                                 zlib.crc32(persona_id.encode())])
    return [prompt_rows[i] for i in sorted(rng.choice(len(prompt_rows), count, replace=False))]


def _row(cfg: BenchConfig, seed: int, model: str, mode: Mode, persona: dict[str, Any],
         prompt: dict[str, Any], text: str, ablated: str | None, answer_text: str | None,
         study: str = "main") -> dict[str, Any]:
    pid, qid = str(persona["persona_id"]), str(prompt["prompt_id"])
    # The request id ignores which persona the judge sees: the answer is the same work
    # either way, and only the verdict (judgment_id) differs.
    reduced = ablated is not None and cfg.loo_judge_persona == "reduced"
    return {
        "request_id": request_id(model, mode, pid, qid, ablated, cfg.k),
        "model": model,
        "mode": mode,
        "persona_id": pid,
        "prompt_id": qid,
        "ablated_attribute": ablated,
        "question": str(prompt["text"]),
        "persona_text": answer_text if reduced else text,
        "judge_persona": "reduced" if reduced else "full",
        "answer_persona_text": answer_text,
        "k": cfg.k,
        "seed": answer_seed(seed, model, mode, pid, qid, cfg.k),
        "study": study,
    }


def build_requests(personas: pa.Table, prompts: pa.Table, cfg: BenchConfig, seed: int,
                   render: Renderer | None = None) -> pa.Table:
    """The whole request table; ids are unique (duplicates from LOO twins are merged)."""
    _require(personas, _PERSONA_COLUMNS, "personas")
    _require(prompts, _PROMPT_COLUMNS, "prompts")
    persona_rows = select(personas, "persona_id", cfg.persona_split, cfg.max_personas, seed)
    prompt_rows = select(prompts, "prompt_id", cfg.prompt_split, cfg.max_prompts, seed)
    if not persona_rows:
        raise DataError(f"no personas to bench (split={cfg.persona_split!r})", source="personas")
    if not prompt_rows:
        raise DataError(f"no prompts to bench (split={cfg.prompt_split!r})", source="prompts")

    needs_render = bool(cfg.loo_attributes) or "persona_text" not in personas.column_names
    renderer = render or (default_renderer() if needs_render else None)
    texts = {str(p["persona_id"]): full_text(p, renderer) if renderer else str(p["persona_text"])
             for p in persona_rows}

    rows: dict[str, dict[str, Any]] = {}

    def add(row: dict[str, Any]) -> None:
        rows.setdefault(row["request_id"], row)

    for model in cfg.models:
        for persona in persona_rows:
            text = texts[str(persona["persona_id"])]
            mine = prompts_for(str(persona["persona_id"]), prompt_rows, cfg.prompts_per_persona,
                               seed)
            for mode in cfg.modes:
                answer_text = text if uses_persona(mode) else None
                for prompt in mine:
                    add(_row(cfg, seed, model, mode, persona, prompt, text, None, answer_text))
        if not cfg.loo_attributes:
            continue
        assert renderer is not None
        loo_personas = persona_rows[: cfg.loo_personas]
        loo_prompts = prompt_rows[: cfg.loo_prompts]
        for persona in loo_personas:
            text = texts[str(persona["persona_id"])]
            twins = [(a, ablated_text(persona, a, renderer)) for a in cfg.loo_attributes]
            if cfg.loo_all_removed:
                twins.append((ALL_REMOVED, all_removed_text(persona, cfg.loo_attributes, renderer)))
            for attribute, ablated in twins:
                if ablated is None:
                    continue
                for prompt in loo_prompts:
                    # The full twin is in the grid already when loo_mode is benched; add it if not.
                    add(_row(cfg, seed, model, cfg.loo_mode, persona, prompt, text, None, text,
                             "loo"))
                    add(_row(cfg, seed, model, cfg.loo_mode, persona, prompt, text, attribute,
                             ablated, "loo"))

    ordered = sorted(rows.values(), key=lambda r: (
        r["model"], r["persona_id"], r["ablated_attribute"] or "", r["mode"], r["prompt_id"]))
    return pa.Table.from_pylist(ordered, schema=REQUEST_SCHEMA)
