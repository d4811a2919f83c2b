"""`persona-gen generate`: one prompt through any registered model, for a quick manual check."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from persona_gen.errors import EXIT_FAILED_ROWS, ConfigError


def read_schema(path: Path) -> dict[str, Any]:
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("file not found", source=str(path)) from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"not valid JSON ({exc.msg} at line {exc.lineno})",
                          source=str(path)) from None
    if not isinstance(schema, dict):
        raise ConfigError("a JSON schema must be an object", source=str(path))
    return schema


def generate(
    model: Annotated[str, typer.Option("--model", "-m", help="Registered model name.")],
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="The user message.")],
    system: Annotated[str | None, typer.Option(help="An optional system message.")] = None,
    json_schema: Annotated[Path | None, typer.Option(
        "--json-schema", help="Constrain the reply to this JSON schema (a .json file).")] = None,
    choice: Annotated[list[str] | None, typer.Option(
        "--choice", help="Constrain the reply to one of these strings (repeatable).")] = None,
    n: Annotated[int, typer.Option("-n", min=1, help="Number of samples.")] = 1,
    max_tokens: Annotated[int | None, typer.Option(help="Default: the model's.")] = None,
    temperature: Annotated[float | None, typer.Option(help="Default: the model's.")] = None,
    seed: Annotated[int | None, typer.Option(help="Sampling seed.")] = None,
) -> None:
    """Send one prompt to a model and print its reply (or replies)."""
    from persona_gen.engines.base import ChatRequest, Message, Sampling
    from persona_gen.engines.factory import create_engine

    schema = read_schema(json_schema) if json_schema else None
    sampling: dict[str, Any] = {"n": n}
    for key, value in (("max_tokens", max_tokens), ("temperature", temperature), ("seed", seed)):
        if value is not None:
            sampling[key] = value
    messages = ([Message(role="system", content=system)] if system else []) + [
        Message(role="user", content=prompt)]
    request = ChatRequest(id="cli", messages=messages, sampling=Sampling(**sampling),
                          json_schema=schema, choices=choice or None)
    engine = create_engine(model)
    try:
        result = engine.generate([request])[0]
    finally:
        engine.close()
    if schema is not None and len(result.texts) > 1:
        # Several constrained samples: one JSON array, so stdout still parses as JSON.
        typer.echo(json.dumps(result.parsed, indent=2, ensure_ascii=False))
    for i, text in enumerate(result.texts if schema is None or len(result.texts) == 1 else []):
        if len(result.texts) > 1:
            typer.echo(f"--- sample {i + 1} ---")
        if schema is not None and i < len(result.parsed):
            typer.echo(json.dumps(result.parsed[i], indent=2, ensure_ascii=False))
        else:
            typer.echo(text)
    sys.stdout.flush()  # the summary goes to stderr; keep it after the reply on a terminal
    typer.echo(f"[{model}: {result.prompt_tokens} prompt + {result.output_tokens} output tokens, "
               f"{result.latency_s:.2f}s]", err=True)
    if not result.ok:
        typer.secho(f"error: {result.error}", err=True, fg=typer.colors.RED)
        raise typer.Exit(EXIT_FAILED_ROWS)  # the one row failed
