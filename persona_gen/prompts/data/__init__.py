"""The bundled prompt set (our own writing) shipped as package data.

A package so that setuptools' package-data globs carry `prompts.jsonl` into wheels.
"""

from __future__ import annotations

from importlib.resources import files

TEXT_COLUMN = "opening_prompt"
"""The bundled file uses PRISM's column name so it exercises the same loader path."""
TOPIC_COLUMN = "topic"
EXPECT_COLUMN = "expect"
"""Set on rows a filter must reject ('reject:<filter>'); absent on rows that must be kept."""


def bundled_prompts_path() -> str:
    return str(files(__name__).joinpath("prompts.jsonl"))
