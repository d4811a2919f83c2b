"""Leave-one-attribute-out: the same persona rendered without one attribute.

Design, as the public persona-bench package does it: the *model under test* sees the ablated
persona and, by default (`bench.loo_judge_persona: reduced`), the judge role-plays that same
ablated persona, so the attribute is gone from the whole loop; `full` keeps the real person
for the judge. Besides one twin per attribute, the package benches the persona with *all*
listed attributes removed (`ALL_REMOVED`, `bench.loo_all_removed`). Comparing verdicts for the full and ablated
twins (same model, mode, question and sampling seed) per attribute gives Cohen's kappa:
a low kappa means dropping the attribute changes whether answers suit the person, so the
attribute matters. Personas for whom the attribute is missing anyway (fertility for men,
say) are skipped for that attribute: their twin would be identical and inflate kappa.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from persona_gen.personas.attributes import PERSONA_ATTRIBUTES
from persona_gen.personas.values import is_missing

ALL_REMOVED = "all_attributes"
"""`ablated_attribute` of the twin with every LOO attribute removed (no persona attribute
has this name)."""
assert ALL_REMOVED not in PERSONA_ATTRIBUTES

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


def all_removed_text(row: Mapping[str, Any], attributes: Sequence[str],
                     render: Renderer) -> str | None:
    """Persona text with every one of `attributes` removed; None when it has none of them."""
    if not any(is_present(row.get(a)) for a in attributes):
        return None
    attrs = attributes_of(row)
    for a in attributes:
        if a not in PERSONA_ATTRIBUTES:
            raise ValueError(f"unknown persona attribute {a!r}")
        attrs[a] = None
    return render(attrs)


def full_text(row: Mapping[str, Any], render: Renderer) -> str:
    """The stored persona text when there is one, else rendered from the attributes."""
    text = row.get("persona_text")
    return text if is_present(text) else render(attributes_of(row))
