"""`persona-gen models list|check|prepare`: the model registry from the command line."""

from __future__ import annotations

import importlib.util
import os
import time
from typing import Annotated

import typer

from persona_gen.engines.registry import ModelSpec, discover, get_spec, shipped_dir, user_dir

app = typer.Typer(help="List, check and prepare models (one YAML file per model).",
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


def why_not_load(spec: ModelSpec) -> str | None:
    """Why this machine cannot load the model, or None when it can."""
    if spec.engine == "echo":
        return None
    if spec.engine == "sim":
        return "it runs only behind the pipeline's engine hosts (it simulates time, not text)"
    if spec.engine == "openai":
        if spec.api_key_env and not os.environ.get(spec.api_key_env):
            return f"{spec.api_key_env} is not set"
        return None
    if importlib.util.find_spec("vllm") is None:
        return "vllm is not installed (pip install -e '.[cpu]' or '.[gpu]')"
    from persona_gen.engines.vllm_engine import on_cpu

    if on_cpu():
        return None if "cpu" in spec.runs_on else "it needs a GPU and this machine has none"
    import torch

    gpus = torch.cuda.device_count()
    if gpus < spec.tensor_parallel_size:
        return f"it needs {spec.tensor_parallel_size} GPUs and this machine has {gpus}"
    return None


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
               f"({result.prompt_tokens} prompt + {result.output_tokens} output tokens):")
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
