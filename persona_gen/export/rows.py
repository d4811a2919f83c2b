"""What a published row holds: the paper's columns, split columns, and TRL's DPO view.

The paper released persona, instruction, original, critique, data (the revision) and
question type; rows here keep those under the same names, add the ids and the persona
and prompt splits (so held-out personas and prompts can be selected), the judge's verdict,
and whatever other columns the run's pair blocks carry (token counts, finish reasons, ...),
unrenamed. Every format keeps the verdict and the finish reasons, so a reader can filter.

The DPO view frames the persona as generation did (the revision stage's system turn):
these are the attributes of the user being answered. `PersonaTurn` says where that frame
goes: the system turn, the user turn (chat templates without a system role, such as
Gemma's), or nowhere.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

QUESTION_TYPES = ("train", "test")
"""The dataset's splits, as the paper defines them (the plan's `question_type`)."""

IDS = ("pair_id", "persona_id", "prompt_id")
TEXTS = ("persona", "instruction", "original", "critique", "data")
REQUIRED = {c: pa.string() for c in (*IDS, "question_type", "prompt_split", *TEXTS)}
"""Columns every pair block must have, with their type."""
PERSONA_SPLIT = "persona_split"
PREFERRED = "preferred"
FINISH_SUFFIX = "_finish_reason"
CHOSEN_FINISH, REJECTED_FINISH = "revision_finish_reason", "original_finish_reason"
"""The finish reasons of the two sides of a pair ('length': cut at the stage's limit)."""
SPLIT_COLUMNS = ("question_type", PERSONA_SPLIT, "prompt_split")
PAPER_COLUMNS = (*IDS, *SPLIT_COLUMNS, *TEXTS, PREFERRED)

MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
DPO_COLUMNS = ("prompt", "chosen", "rejected")


PERSONA_FRAME = ("About the person:\n", "\n\nYou are a helpful assistant, and the person "
                 "described above is the user you are answering.")
"""Text before and after the persona's `key: value` lines: the revision stage's framing
(persona_gen/templates/revision.jinja), which says whose attributes they are."""


class PersonaTurn(StrEnum):
    system = "system"
    """The framed persona is the system turn, the instruction the user turn."""
    user = "user"
    """The framed persona leads the user turn, before the instruction (no system turn)."""
    none = "none"
    """No persona: the instruction alone (a persona-blind view)."""


class DataFormat(StrEnum):
    paper = "paper"
    """The paper's columns, ids, splits and the verdict, plus the run's other pair columns."""
    trl_dpo = "trl-dpo"
    """The paper's rows plus TRL's conversational `prompt` / `chosen` / `rejected`."""
    trl_dpo_only = "trl-dpo-only"
    """Ids, splits, the verdict, the finish reasons and `prompt` / `chosen` / `rejected`."""

    @property
    def dpo(self) -> bool:
        return self is not DataFormat.paper


def messages(turns: list[tuple[str, pa.ChunkedArray | pa.Array]]) -> pa.ListArray:
    """One conversation per row: `[{role, content}, ...]` with the turns in order."""
    n, k = len(turns[0][1]), len(turns)
    contents = pa.concat_arrays([pa.chunked_array(c).cast(pa.string()).combine_chunks()
                                 for _, c in turns])
    # Interleave so row i's turns are adjacent: turn j of row i sits at j * n + i.
    order = (np.arange(n)[:, None] + np.arange(k)[None, :] * n).ravel()
    roles = pa.array(np.tile([r for r, _ in turns], n), pa.string())
    structs = pa.StructArray.from_arrays([roles, contents.take(pa.array(order))],
                                         fields=list(MESSAGE))
    return pa.ListArray.from_arrays(pa.array(np.arange(0, n * k + 1, k), pa.int32()), structs)


def framed_persona(persona: pa.ChunkedArray | pa.Array) -> pa.Array:
    before, after = PERSONA_FRAME
    return pc.binary_join_element_wise(before, persona, after, "")


def dpo(block: pa.Table, turn: PersonaTurn = PersonaTurn.system) -> dict[str, pa.Array]:
    """TRL's conversational preference format: the persona framed as the user being
    answered (where `turn` says), the chosen answer the persona-tailored revision and the
    rejected one the original."""
    instruction = block.column("instruction")
    if turn is PersonaTurn.system:
        prompt = [("system", framed_persona(block.column("persona"))), ("user", instruction)]
    elif turn is PersonaTurn.user:
        joined = pc.binary_join_element_wise(framed_persona(block.column("persona")),
                                             instruction, "\n\n")
        prompt = [("user", joined)]
    else:
        prompt = [("user", instruction)]
    return {
        "prompt": messages(prompt),
        "chosen": messages([("assistant", block.column("data"))]),
        "rejected": messages([("assistant", block.column("original"))]),
    }


def is_reasoning(column: str) -> bool:
    """A stage's reasoning text (`<stage>_reasoning`, stages with thinking on): not part of
    the published dataset unless asked for."""
    return column.endswith("_reasoning")


def shape(block: pa.Table, persona_split: pa.Array, preferred: pa.Array,
          fmt: DataFormat, turn: PersonaTurn = PersonaTurn.system,
          reasoning: bool = False) -> pa.Table:
    """A conformed pair block as published rows, columns in a fixed order; reasoning
    columns only with `reasoning`."""
    cols: dict[str, pa.Array | pa.ChunkedArray] = {
        **{c: block.column(c) for c in (*IDS, "question_type")},
        PERSONA_SPLIT: persona_split,
        "prompt_split": block.column("prompt_split"),
    }
    if fmt is not DataFormat.trl_dpo_only:
        cols.update({c: block.column(c) for c in TEXTS})
    cols[PREFERRED] = preferred
    if fmt.dpo:
        cols.update(dpo(block, turn))
    rest = [c for c in block.column_names
            if c not in cols and (reasoning or not is_reasoning(c))]
    if fmt is DataFormat.trl_dpo_only:
        rest = [c for c in rest if c.endswith(FINISH_SUFFIX)]
    cols.update({c: block.column(c) for c in rest})
    return pa.table(cols)
