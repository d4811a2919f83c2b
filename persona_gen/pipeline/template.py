"""Prompt templates: Jinja text with a `system` and a `user` block, one per model stage.

Every stage's default template is a file in `persona_gen/templates/<stage>.jinja`; a config
points a stage elsewhere with `stages.<stage>.template` (a path to a .jinja file, Jinja text
inline, or `{system: ..., user: ...}`). A template may only use the variables its stage
declares: an unknown one is a one-line config error when the config loads, long before a
model sees it. The manifest records each stage's template text and hash, so a dataset says
which words produced it.

    {% block system %}
    You are role-playing the person described below ...
    {% endblock %}
    {% block user %}
    Question: {{ instruction }} ...
    {% endblock %}

A line holding only a tag (`{% if %}`, `{% endblock %}`) leaves no line behind, and each
block's output is stripped of leading and trailing whitespace; a missing or empty `system`
block sends no system message.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta

from persona_gen.engines.base import Message
from persona_gen.errors import ConfigError

BLOCKS = ("system", "user")
SHIPPED = "persona_gen/templates"
"""Where the default templates live (shown in records and messages)."""

# trim_blocks/lstrip_blocks: a line holding only a tag leaves no blank line behind, so a
# template reads as the text it produces.
_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False,
                          trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False)


@dataclass(frozen=True)
class PromptTemplate:
    """A stage's prompt: Jinja source text and where it came from. Pickles as plain text;
    the compiled form is cached per process."""

    text: str
    source: str
    """The file it was read from, or 'inline'."""

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def variables(self) -> set[str]:
        return _variables(self.text)

    def check(self, allowed: tuple[str, ...], where: str) -> PromptTemplate:
        """Raise ConfigError (one line, naming `where`) unless the template parses, has a
        `user` block and uses only `allowed` variables."""
        try:
            used = _variables(self.text)
            blocks = _compiled(self.text).blocks
        except jinja2.TemplateSyntaxError as exc:
            raise ConfigError(f"template {self.source}: {exc.message} (line {exc.lineno})",
                              source=where) from None
        if "user" not in blocks:
            raise ConfigError(f"template {self.source} has no {{% block user %}}", source=where)
        unknown = sorted(used - set(allowed))
        if unknown:
            raise ConfigError(f"template {self.source} uses unknown variable(s) "
                              f"{', '.join(unknown)}; this stage offers: {', '.join(allowed)}",
                              source=where)
        return self

    def render(self, variables: dict[str, Any]) -> list[Message]:
        tpl = _compiled(self.text)
        ctx = tpl.new_context(variables)
        out = []
        for role in BLOCKS:
            if role in tpl.blocks:
                content = "".join(tpl.blocks[role](ctx)).strip()
                if content:
                    out.append(Message(role=role, content=content))  # type: ignore[arg-type]
        return out

    def record(self) -> dict[str, str]:
        """What the manifest and the dataset card keep of it."""
        return {"source": self.source, "sha256": self.sha256, "text": self.text}


@lru_cache(maxsize=64)
def _compiled(text: str) -> jinja2.Template:
    return _ENV.from_string(text)


@lru_cache(maxsize=64)
def _variables(text: str) -> set[str]:
    return set(jinja2.meta.find_undeclared_variables(_ENV.parse(text)))


def shipped(name: str) -> PromptTemplate:
    """The default template shipped for `name` (a stage name, or stage-variant)."""
    return _shipped(name)


@lru_cache(maxsize=32)
def _shipped(name: str) -> PromptTemplate:
    path = resources.files("persona_gen.templates").joinpath(f"{name}.jinja")
    if not path.is_file():
        raise ConfigError(f"no shipped template '{name}.jinja'", source=SHIPPED)
    return PromptTemplate(path.read_text(encoding="utf-8"), f"{SHIPPED}/{name}.jinja")


def inline(system: str | None, user: str) -> PromptTemplate:
    parts = [] if system is None else ["{% block system %}", system, "{% endblock %}\n"]
    parts += ["{% block user %}", user, "{% endblock %}\n"]
    return PromptTemplate("".join(parts), "inline")


def load(value: str | dict[str, str], where: str) -> PromptTemplate:
    """A config's template: a .jinja path (relative to the working directory), Jinja text
    with the two blocks, or a mapping {system, user}."""
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(BLOCKS))
        if unknown or "user" not in value:
            raise ConfigError(f"expected a mapping with 'user' (and optionally 'system'), got "
                              f"keys {sorted(value)}", source=where)
        return inline(value.get("system"), value["user"])
    if "{%" in value or "{{" in value:
        return PromptTemplate(value, "inline")
    path = Path(value).expanduser()
    if not path.is_file():
        raise ConfigError(f"template file '{value}' not found (paths are relative to the "
                          "working directory)", source=where)
    return PromptTemplate(path.read_text(encoding="utf-8"), str(path))
