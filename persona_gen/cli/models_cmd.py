"""`persona-gen models list|check|prepare|add`: the model registry from the command line."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
import yaml

from persona_gen.engines.registry import (
    MODELS_DIR_ENV,
    ModelSpec,
    discover,
    get_spec,
    shipped_dir,
    user_dir,
)
from persona_gen.run.doctor import why_not_load

app = typer.Typer(help="List, check, prepare and add models (one YAML file per model).",
                  no_args_is_help=True)


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)


@app.command("list")
def list_models(
    as_json: Annotated[bool, typer.Option("--json", help="Print the models as JSON.")] = False,
) -> None:
    """Every registered model: shipped ones and those in $PERSONA_GEN_MODELS_DIR."""
    models = discover()
    if as_json:
        import json

        typer.echo(json.dumps([{**models[n].spec.model_dump(mode="json"),
                                "registry_file": str(models[n].path)} for n in sorted(models)],
                              indent=2))
        return
    rows = [["NAME", "ENGINE", "SOURCE", "DTYPE", "CONTEXT", "TP", "RUNS ON"]]
    for name in sorted(models):
        spec = models[name].spec
        source = spec.source or spec.base_url or "-"
        rows.append([name, spec.engine, source, spec.dtype, str(spec.max_model_len),
                     str(spec.tensor_parallel_size), ",".join(spec.runs_on)])
    typer.echo(_table(rows))
    extra = user_dir()
    typer.echo(f"\n{len(models)} models from {shipped_dir()}"
               + (f" and {extra}" if extra else " (add your own: $PERSONA_GEN_MODELS_DIR)"))


@app.command("check")
def check(
    name: Annotated[str, typer.Argument(help="Model name (or a path to a model YAML file).")],
    load: Annotated[bool, typer.Option("--load/--no-load",
                                       help="Load the model and generate one reply.")] = True,
    max_tokens: Annotated[int, typer.Option(help="Reply length for the test.")] = 32,
) -> None:
    """Validate a model's YAML; where this machine can, load it and generate one reply."""
    from persona_gen.engines.base import ChatRequest, Message, Sampling
    from persona_gen.engines.factory import create_engine, resolve_spec

    spec = resolve_spec(get_spec(name))
    where = spec.source or spec.base_url
    typer.echo(f"{spec.name}: valid ({spec.engine} engine" + (f", {where})" if where else ")"))
    if not load:
        return
    reason = why_not_load(spec)
    if reason is not None:
        typer.echo(f"{spec.name}: not loaded here: {reason}")
        return
    started = time.monotonic()
    engine = create_engine(spec)
    loaded = time.monotonic() - started
    try:
        request = ChatRequest(id="check", messages=[Message(
            role="user", content="Say hello in one short sentence.")],
            sampling=Sampling(max_tokens=max_tokens, temperature=0.0, seed=0))
        result = engine.generate([request])[0]
    finally:
        engine.close()
    if not result.ok:
        typer.secho(f"{spec.name}: loaded in {loaded:.1f}s but the test reply failed: "
                    f"{result.error}", err=True, fg=typer.colors.RED)
        raise typer.Exit(1)
    typer.echo(f"{spec.name}: loaded in {loaded:.1f}s; reply in {result.latency_s:.2f}s "
               f"({result.prompt_tokens} prompt + {result.output_tokens} output tokens"
               + (f", {result.reasoning_tokens} of them reasoning" if result.reasoning_tokens
                  else "") + "):")
    typer.echo(result.text.strip())


@app.command("prepare")
def prepare(
    name: Annotated[str | None, typer.Argument(help="A bundled model (default: all).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Convert again even if present.")] = False,
) -> None:
    """Convert the bundled model(s) into the cache once; later runs only verify checksums."""
    from persona_gen.engines import bundled

    names = [name] if name else sorted(bundled.BUNDLED)
    for item in names:
        started = time.monotonic()
        folder = bundled.prepare(item, force=force)
        files = len((folder / bundled.CHECKSUMS).read_text().splitlines())
        typer.echo(f"{item}: ready at {folder} ({files} files verified, "
                   f"{time.monotonic() - started:.1f}s)")


@app.command("add")
def add(
    source: Annotated[str, typer.Argument(
        help="A Hugging Face id (needs the hub), a local folder or an s3:// folder.")],
    name: Annotated[str | None, typer.Option(
        "--name", help="Model name (default: from the source's last path part).")] = None,
    gpu: Annotated[str, typer.Option(
        "--gpu", help="GPU class the file's tensor_parallel_size is for (`cost`'s "
        "GPU types: H100, H200, A100-80GB, ...).")] = "H100",
    max_model_len: Annotated[int, typer.Option(
        "--max-model-len", min=64, help="Cap on the context written (the model's own, "
        "if smaller).")] = 32768,
    to: Annotated[Path | None, typer.Option(
        "--to", help="Folder to write NAME.yaml into (default: $PERSONA_GEN_MODELS_DIR, "
        "else the current folder).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing file.")] = False,
) -> None:
    """Write a model file for a checkpoint, inferred from its config.json, weights' headers,
    tokenizer config and chat template; print what was inferred and what was not.

    Inferred: architecture, parameters (total and active), quantization and size, GPUs per engine for each GPU class, context length, system-role support (by rendering the template), reasoning style (from the template and config), tokenizer mode. Then run `persona-gen models check NAME`.
    """  # typer keeps line breaks: one line per paragraph
    from persona_gen.cost.tables import load_table
    from persona_gen.engines.infer import infer, model_file_text
    from persona_gen.errors import UserError

    folder = to or user_dir() or Path.cwd()
    if folder == user_dir():
        # The registry reads this folder (the table's model shapes come from it): the
        # first model added there creates it.
        folder.mkdir(parents=True, exist_ok=True)
    table = load_table()
    gpu_name, _ = table.gpu(gpu)
    inferred = infer(source, {g: s.memory_gb for g, s in table.gpus.items()},
                     target_gpu=gpu_name, name=name, context_cap=max_model_len)
    path = folder / f"{inferred.spec['name']}.yaml"
    if path.exists() and not force:
        raise UserError("exists; pass --force to replace it", source=str(path))
    text = model_file_text(inferred, source)
    # Validate before writing: a file that would not load is never left behind.
    from persona_gen.config.loader import validate_model

    validate_model(ModelSpec, yaml.safe_load(text), str(path)).check(str(path))
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    rows = [["FIELD", "INFERRED"], *([k, v] for k, v in inferred.found)]
    typer.echo(_table(rows))
    if inferred.unknown:
        typer.echo("\nnot inferred:")
        for item in inferred.unknown:
            typer.echo(f"  - {item}")
    typer.echo(f"\nwrote {path}")
    registry = user_dir()
    if registry is not None and folder.resolve() == registry.resolve():
        typer.echo(f"next: persona-gen models check {inferred.spec['name']}")
    else:
        typer.echo(f"next: persona-gen models check {path} (to use it by name, keep it in "
                   f"${MODELS_DIR_ENV})")
