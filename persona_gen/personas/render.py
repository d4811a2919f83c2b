"""Persona -> text: `key: value` lines in PERSONA_ATTRIBUTES order.

This is the one rendering every prompt that shows a persona uses (enrichment, consistency
judge, critiques, bench), so a persona reads the same to every model. Keys are the
snake_case attribute names; missing values are skipped, not shown as blanks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from persona_gen.personas.attributes import PERSONA_ATTRIBUTES
from persona_gen.personas.lists import ITEM_SEPARATOR
from persona_gen.personas.record import Persona
from persona_gen.personas.values import is_missing


def format_value(name: str, value: Any) -> str:
    if name == "income" and isinstance(value, int | float):
        amount = int(value)
        return f"-${-amount:,}" if amount < 0 else f"${amount:,}"
    if isinstance(value, list | tuple):
        return ITEM_SEPARATOR.join(str(v) for v in value if not is_missing(v))
    return " ".join(str(value).split())  # one line: model text may carry newlines


def render_persona(
    persona: Persona | Mapping[str, Any], attributes: Iterable[str] = PERSONA_ATTRIBUTES
) -> str:
    """`key: value` lines in render order, skipping missing values.

    Takes a Persona or any row mapping (a partly built persona renders what it has).
    `attributes` selects a subset, e.g. for leave-one-out studies; order stays canonical.
    """
    row = persona.attributes() if isinstance(persona, Persona) else persona
    wanted = set(attributes)
    lines = [
        f"{name}: {format_value(name, row.get(name))}"
        for name in PERSONA_ATTRIBUTES
        if name in wanted and not is_missing(row.get(name))
    ]
    return "\n".join(lines)
