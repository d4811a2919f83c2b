"""The dataset's licence, from its parts: the prompts' licence and each model's terms.

Model outputs carry the terms of the model that wrote them (Llama 3.1's community licence,
Gemma's terms of use, ...), so the card's `license` is derived from every part, not from
the prompts alone: one Hub identifier when all parts share it, a list when they are
several open licences, `other` with a `license_name` when a model has terms of its own,
and `unknown` when a part's terms are not known to persona-gen.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Terms:
    """The terms one part of the dataset comes under."""

    name: str
    """In words, for the card's body."""
    hub_id: str
    """The Hub's licence identifier: `apache-2.0`, `cc-by-4.0`, ..., `other` (terms of its
    own, named by `slug`) or `unknown`."""
    slug: str | None = None
    """`license_name` on the Hub where hub_id is `other`."""
    link: str | None = None


APACHE = Terms("Apache-2.0", "apache-2.0")
UNKNOWN = Terms("not known to persona-gen: check the model's terms before publishing",
                "unknown")
MODEL_TERMS: tuple[tuple[re.Pattern[str], Terms], ...] = (
    (re.compile(r"llama-?3\.1", re.I), Terms(
        "Llama 3.1 Community License", "other", "llama3.1",
        "https://www.llama.com/llama3_1/license/")),
    (re.compile(r"llama-?3\.2", re.I), Terms(
        "Llama 3.2 Community License", "other", "llama3.2",
        "https://www.llama.com/llama3_2/license/")),
    (re.compile(r"gemma", re.I), Terms(
        "Gemma Terms of Use", "other", "gemma", "https://ai.google.dev/gemma/terms")),
    # Qwen2.5's 3B and 72B have a licence of their own; these sizes are Apache-2.0.
    (re.compile(r"qwen2\.5-(0\.5|1\.5|7|14|32)b", re.I), APACHE),
    (re.compile(r"mistral-7b-instruct", re.I), APACHE),
    (re.compile(r"smollm2", re.I), APACHE),
    (re.compile(r"(^|[\s/])gpt-|openai", re.I), Terms(
        "OpenAI Terms of Use", "other", "openai-terms-of-use",
        "https://openai.com/policies/terms-of-use")),
)
"""Terms of the model families persona-gen ships model files for, matched on the model's
name and weights (the registry's `source` / `model`)."""
NO_MODEL_ENGINES = ("echo", "sim")
"""Engines that run no model: their text comes under no model's terms."""


def model_terms(name: str, spec: dict[str, Any] | None) -> Terms | None:
    """The terms a model's outputs come under; None for engines that run no model."""
    spec = spec or {}
    if spec.get("engine") in NO_MODEL_ENGINES or (not spec and name in NO_MODEL_ENGINES):
        return None
    text = " ".join(str(v) for v in (name, spec.get("source"), spec.get("model")) if v)
    return next((terms for pattern, terms in MODEL_TERMS if pattern.search(text)), UNKNOWN)


def header_fields(prompts_hub_id: str, models: Iterable[Terms | None]) -> dict[str, Any]:
    """The card header's `license` (and `license_name` / `license_link` for `other`)."""
    terms = [t for t in models if t is not None]
    parts = list(dict.fromkeys([prompts_hub_id, *(t.hub_id for t in terms)]))
    if "unknown" in parts:
        return {"license": "unknown"}
    own = list({t.slug: t for t in terms if t.hub_id == "other"}.values())
    if own:
        names = [p for p in parts if p != "other"] + [str(t.slug) for t in own]
        out: dict[str, Any] = {"license": "other", "license_name": "-and-".join(names)}
        if len(own) == 1 and own[0].link:
            out["license_link"] = own[0].link
        return out
    return {"license": parts[0] if len(parts) == 1 else parts}
