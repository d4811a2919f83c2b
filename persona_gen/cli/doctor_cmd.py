"""`persona-gen doctor`: what this machine can do, and what to fix."""

from __future__ import annotations

from persona_gen.cli.conventions import JsonOpt


def doctor(json_: JsonOpt = False) -> None:
    """Check this machine."""
