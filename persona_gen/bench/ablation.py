"""Leave-one-attribute-out: the same persona rendered without one attribute.

Design: the *model under test* sees the ablated persona; by default the judge sees the full
persona (the real person being served). With `bench.loo_judge_persona: reduced` the judge
role-plays the ablated persona too, so the attribute is gone from the whole loop. Comparing verdicts for the full and ablated
twins (same model, mode, question and sampling seed) per attribute gives Cohen's kappa:
a low kappa means dropping the attribute changes whether answers suit the person, so the
attribute matters. Personas for whom the attribute is missing anyway (fertility for men,
say) are skipped for that attribute: their twin would be identical and inflate kappa.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from persona_gen.personas.attributes import PERSONA_ATTRIBUTES
from persona_gen.personas.values import is_missing

Renderer = Callable[[Mapping[str, Any]], str]
"""Attribute mapping (render order keys; absent or empty = missing) -> persona text."""


def default_renderer() -> Renderer:
    """The project's persona renderer (personas.render), imported when first needed."""
    from persona_gen.personas.render import render_persona

    return render_persona


def is_present(value: Any) -> bool:
    """The personas package's notion of missing (None, blank, NaN, census 'N/A ...')."""
    return not is_missing(value)


def attributes_of(row: Mapping[str, Any]) -> dict[str, Any]:
    """The persona's attribute values from a personas-table row (other columns dropped)."""
    return {name: row.get(name) for name in PERSONA_ATTRIBUTES}


def without(row: Mapping[str, Any], attribute: str) -> dict[str, Any]:
    """The persona's attributes with `attribute` removed, as if it had never been drawn."""
    if attribute not in PERSONA_ATTRIBUTES:
        raise ValueError(f"unknown persona attribute {attribute!r}")
    attrs = attributes_of(row)
    attrs[attribute] = None
    return attrs


def ablated_text(row: Mapping[str, Any], attribute: str, render: Renderer) -> str | None:
    """Persona text without `attribute`; None when the persona lacks it already."""
    if not is_present(row.get(attribute)):
        return None
    return render(without(row, attribute))


def full_text(row: Mapping[str, Any], render: Renderer) -> str:
    """The stored persona text when there is one, else rendered from the attributes."""
    text = row.get("persona_text")
    return text if is_present(text) else render(attributes_of(row))
