"""Checks before a run starts: every config and input problem, found at once, before Ray
starts or a model loads.

On a GPU cluster every minute before a failure is paid for (engines start, weights load,
phases run), so `persona-gen run` (and `jobs/generate_feedback.py`, and `bench run`) first
checks, without starting anything:

    run id        valid
    output        writable: a probe object written and removed
    existing run  none, or its stored config matches (or it failed before committing
                  anything, and this config replaces it)
    inputs        what the first phase reads is there; census sources and the prompt file
                  readable (with their sizes); model folders on object storage readable
    models        every model an enabled stage names resolves in the registry
    engines       each model's engine can run where it will (CPU or GPU as its file allows;
                  where engines run on this machine: vLLM installed, a model folder there,
                  an HTTP server answering, its API key set)
    cluster       the Ray cluster the run will use (pipeline.ray_address, RAY_ADDRESS, or the
                  local instance it would start), and whether one engine of each model fits
                  on a node it has or can scale to (GPUs, accelerator type, CPUs)

Each check is one small value (name, key, ok, detail); every failure is one line naming the
key or file and what was expected. `run --check` prints them all and starts nothing.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import pyarrow as pa

from persona_gen.errors import (
    EXIT_BAD_INPUT,
    EXIT_OK,
    PreflightError,
    StorageUnavailable,
    UserError,
    one_line,
)
from persona_gen.log import get_logger
from persona_gen.run import recipe as R
from persona_gen.run.config import RunConfig
from persona_gen.run.manifest import Failure, Stored, compare, record_failed_start
from persona_gen.storage import objects
from persona_gen.storage.runref import RunRef, check_run_id
from persona_gen.storage.uri import Location, resolve

if TYPE_CHECKING:
    from persona_gen.engines.registry import ModelSpec
    from persona_gen.pipeline.cluster import ClusterOffer

DONE_MARKER = ".done.json"
"""Written last into a folder of driver-computed blocks (persona_gen.run.execute)."""
Candidates = tuple[pa.Table, dict[str, Any]]
"""Prompts that passed the rule filters, and the filter counts."""


@dataclass(frozen=True)
class Check:
    """One thing checked before a run: what, about which key or file, and the outcome."""

    name: str
    """What kind of check: run id, output, existing run, phase input, census, prompts,
    bench input, model, engine, model source, cluster, layout."""
    key: str
    """The config key or file it is about (what a failure's line starts with)."""
    ok: bool
    detail: str
    """ok: what was found (sizes, counts, where); failed: what was expected."""
    exit_code: int = EXIT_BAD_INPUT
    """The exit code this failure asks for (4 where rerunning may fix it)."""

    @property
    def line(self) -> str:
        return f"{self.key}: {self.detail}"

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if self.ok:
            out.pop("exit_code")
        return out


@dataclass
class Preflight:
    """Every check of one attempt (or of `run --check`), and what they found."""

    checks: list[Check] = field(default_factory=list)
    run: RunRef | None = None
    stored: Stored | None = None
    """The run's stored manifest compared with the config (None until checked)."""
    candidates: Candidates | None = None
    """The prompt candidates, when the attempt's prompts phase needs them (reused by it)."""

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    @property
    def exit_code(self) -> int:
        """0; else 2 if any failure is bad input (fix that first); else the failures' code."""
        codes = {c.exit_code for c in self.failures}
        if not codes:
            return EXIT_OK
        return EXIT_BAD_INPUT if EXIT_BAD_INPUT in codes else max(codes)

    def error(self) -> PreflightError:
        return PreflightError([c.line for c in self.failures], self.exit_code)

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "exit_code": self.exit_code,
                "run": self.run.uri if self.run else None,
                "checks": [c.as_dict() for c in self.checks]}

    def table(self) -> str:
        """Plain aligned columns, one check per line (no wrapping: every line greps)."""
        rows = [("check", "key", "result", "detail")]
        rows += [(c.name, c.key, "ok" if c.ok else "FAIL", c.detail) for c in self.checks]
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        lines = ["  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3]
                 for r in rows]
        n = len(self.failures)
        lines.append(f"{len(self.checks)} checks, {n} failed" if n else
                     f"{len(self.checks)} checks, all ok")
        return "\n".join(lines)


class _Checker:
    """Runs checks one by one, turning the errors a user can fix into failed checks.

    Once object storage stayed unreachable past its retry budget, later checks on object
    storage are not tried again (each would wait the whole budget): they fail at once."""

    def __init__(self, report: Preflight) -> None:
        self.report = report
        self.storage_down: str | None = None

    def add(self, name: str, key: str, ok: bool, detail: str,
            exit_code: int = EXIT_BAD_INPUT) -> Check:
        check = Check(name, key, ok, detail, exit_code)
        self.report.checks.append(check)
        return check

    def run(self, name: str, key: str, fn: Callable[[], str], *,
            remote: bool = False) -> Check:
        """`fn()` returns the ok detail; a UserError or OSError is the failure's detail.
        `remote`: it touches object storage."""
        if remote and self.storage_down:
            return self.add(name, key, False, f"not checked: {self.storage_down}",
                            StorageUnavailable.exit_code)
        try:
            return self.add(name, key, True, fn())
        except UserError as exc:
            if isinstance(exc, StorageUnavailable):
                self.storage_down = f"object storage unreachable (see {key})"
            detail = str(exc)
            if exc.source and key.endswith(exc.source):  # the line names it already
                detail = detail.removeprefix(f"{exc.source}: ")
            return self.add(name, key, False, detail, exc.exit_code)
        except OSError as exc:
            return self.add(name, key, False, one_line(exc).removeprefix("OSError: "))


# ---- entry points ---------------------------------------------------------------------------

def check_run(cfg: RunConfig, root: str, run_id: str, phases: list[R.Phase], *,
              allow_template_change: bool = False) -> Preflight:
    """Every check of an attempt at `phases` of the run `root`/`run_id`; raises nothing
    a user could fix (those are failed checks)."""
    report = Preflight()
    c = _Checker(report)
    run = _address(c, cfg, root, run_id)
    if run is not None:
        _existing_run(c, report, run, cfg, allow_template_change)
        _phase_inputs(c, run, phases)
    _census(c, cfg, run, phases)
    _prompts(c, report, cfg, run, phases)
    _models(c, cfg, _model_users(cfg, R.recipe(cfg).stages))
    return report


def check_bench(cfg: RunConfig, root: str, run_id: str, inputs: dict[str, str]) -> Preflight:
    """The checks of `bench run`: address, its input tables, the models under test and
    the judge (`stages.bench_judge.model`), engines and cluster."""
    report = Preflight()
    c = _Checker(report)
    _address(c, cfg, root, run_id)
    for what, uri in inputs.items():
        c.run("bench input", f"--{what}", lambda what=what, uri=uri: _table_there(uri, what, cfg),
              remote=_in_a_store(uri))
    stages = [s for s in R.all_stages() if s.name in ("bench_answer", "bench_judge")]
    _models(c, cfg, _model_users(cfg, stages))
    return report


def before_run(cfg: RunConfig, run: RunRef, phases: list[R.Phase], *,
               allow_template_change: bool = False) -> Preflight:
    """What every attempt does first: the checks, logged one line each when all pass. If
    any fails, the manifest says `failed` with the reason (where the run may be written: a refused attempt
    leaves it as it was) and PreflightError lists every failure."""
    report = check_run(cfg, run.root_uri, run.run_id, phases,
                       allow_template_change=allow_template_change)
    log = get_logger(stage="preflight")
    if report.ok:  # the run's log keeps what was found (sizes, layout); a failure says only
        for check in report.checks:  # what failed, one line each (the CLI prints them)
            log.info("check", check=check.name, key=check.key, detail=check.detail)
        return report
    error = report.error()
    if report.stored is not None and _writable(report):
        failure = Failure(reason=one_line(error), exit_code=error.exit_code,
                          at=time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()))
        try:
            record_failed_start(run, cfg, report.stored, failure)
        except (UserError, OSError) as exc:
            log.error("manifest_not_updated", reason=one_line(exc))
    raise error


def _writable(report: Preflight) -> bool:
    """Whether the failure may be recorded: the run may be written, and it is one (an
    attempt at a later phase of a run that does not exist makes no run folder)."""
    if report.stored is not None and report.stored.manifest is None and any(
            c.name == "phase input" for c in report.failures):
        return False
    return all(c.ok for c in report.checks if c.name in ("run id", "output", "existing run"))


# ---- the checks ------------------------------------------------------------------------------

def _address(c: _Checker, cfg: RunConfig, root: str, run_id: str) -> RunRef | None:
    """Run id and output; the run's address when both are good."""
    id_ok = c.run("run id", "run.run_id", lambda: check_run_id(run_id)).ok
    loc: list[Location] = []

    def probe() -> str:
        where = resolve(root, cfg.storage)
        loc.append(where)
        name = f"_persona-gen-probe-{uuid.uuid4().hex}"
        target = where.child(name)
        made = _missing_folders(where)
        try:
            objects.write_bytes_atomic(target, b"persona-gen preflight probe")
            objects.delete(target)
        except OSError as exc:
            raise UserError(f"not writable ({one_line(exc).removeprefix('OSError: ')})",
                            source=where.uri) from None
        finally:
            for folder in made:  # leave no trace: the folders the probe's write made
                with contextlib.suppress(OSError):
                    folder.rmdir()
        if objects.exists(target):
            raise UserError("a probe object was written but could not be deleted (no delete "
                            "permission?); runs need both", source=target.uri)
        return f"{where.uri}: probe object written and removed"

    c.run("output", "run.output", probe, remote=_in_a_store(root))
    if not (id_ok and loc):
        return None
    # Even where the probe failed: the existing-run check reads what it can.
    run = RunRef.at(loc[0].uri, run_id, cfg.storage)
    c.report.run = run
    return run


def _missing_folders(loc: Location) -> list[Path]:
    """Local folders from `loc` up that do not exist yet, deepest first."""
    if not loc.is_local:
        return []
    missing = []
    folder = Path(loc.path)
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def _existing_run(c: _Checker, report: Preflight, run: RunRef, cfg: RunConfig,
                  allow_template_change: bool) -> None:
    def compared() -> str:
        stored = compare(run, cfg)
        problem = stored.problem(run.run_id, allow_template_change)
        if problem:
            raise UserError(problem, source=run.manifest.uri)
        report.stored = stored
        m = stored.manifest
        if m is None:
            return "new run"
        if stored.replaceable:
            changed = ", ".join(stored.changed + [f"stages.{n}.template" for n in stored.moved])
            why = m.failure.reason if m.failure else m.status
            why = why if len(why) <= 160 else why[:157] + "..."
            return (f"replaces run '{run.run_id}' ({changed} changed): it failed before "
                    f"committing anything ({why})")
        done = ", ".join(m.phases) or "none"
        moved = (f"; template of {', '.join(stored.moved)} changed (allowed)"
                 if stored.moved else "")
        return f"resumes run '{run.run_id}' (status {m.status}, phases done: {done}){moved}"

    c.run("existing run", run.manifest.uri, compared, remote=run.base.is_object_store)


def _phase_inputs(c: _Checker, run: RunRef, phases: list[R.Phase]) -> None:
    """What the first phase reads must exist, unless a phase of this attempt makes it."""
    for table in R.phase(phases[0]).needs:
        if R.maker(table) in phases:
            continue
        loc = run.child(table)

        def there(loc: Location = loc, table: str = table) -> str:
            if not objects.exists(loc):
                raise UserError(f"not found; run `persona-gen run --until {R.maker(table)}` "
                                "for this run first")
            return "present"

        c.run("phase input", loc.uri, there, remote=loc.is_object_store)


def _done(c: _Checker, run: RunRef | None, *parts: str) -> bool:
    """Whether the run already holds this table (then its inputs are not read again)."""
    if run is None or (c.storage_down and run.base.is_object_store):
        return False
    try:
        return objects.exists(run.child(*parts))
    except (UserError, OSError):
        return False  # the output and existing-run checks report storage themselves


def _census(c: _Checker, cfg: RunConfig, run: RunRef | None, phases: list[R.Phase]) -> None:
    if "personas" not in phases:
        return
    if _done(c, run, R.PERSONAS):
        c.add("census", "census.sources", True, "not read: the personas are done")
        return
    if not cfg.census.sources:
        c.add("census", "census.sources", False, "no census files listed (PUMS psam_p*.csv / "
              "csv_p??.zip or NIST excerpt CSVs)")
        return
    for i, src in enumerate(cfg.census.sources):
        c.run("census", f"census.sources[{i}]", lambda src=src: _census_source(src, cfg),
              remote=_in_a_store(src))


def _in_a_store(uri: str) -> bool:
    """An object-store URI (s3://, gs://, az://): a check there may wait on the network."""
    scheme = uri.split("://", 1)[0] if "://" in uri else ""
    return scheme not in ("", "file")


def _census_source(src: str, cfg: RunConfig) -> str:
    """Readable, with its size: every part's header read, its layout recognised."""
    from persona_gen.census.read import expand, layout_of

    parts = expand([src], cfg.storage)
    layouts = sorted({layout_of(p, cfg.census.layout).name for p in parts})
    size = sum(objects.sizes(resolve(src, cfg.storage)).values())
    files = f"{len(parts)} CSV file{'s' if len(parts) != 1 else ''}"
    return f"{src}: readable, {_bytes(size)}, {files} ({', '.join(layouts)} layout)"


def _prompts(c: _Checker, report: Preflight, cfg: RunConfig, run: RunRef | None,
             phases: list[R.Phase]) -> None:
    if "prompts" not in phases:
        return
    if _done(c, run, R.PROMPTS) or _done(c, run, R.PROMPT_CANDIDATES, DONE_MARKER):
        c.add("prompts", "prompts.source", True, "not read: the prompt candidates are done")
        return
    from persona_gen.prompts.build import select_prompts, source_of

    uri = source_of(cfg.prompts)[0]

    def read() -> str:
        sel = select_prompts(cfg.prompts, None, s3=cfg.storage, seed=cfg.run.seed)
        if sel.kept.num_rows == 0:
            raise UserError(f"none of its {sel.stats.rows:,} prompts passes the rule filters "
                            "(non-empty, distinct, a question, prompts.min_words)", source=uri)
        report.candidates = (sel.kept, sel.stats.model_dump(mode="json"))
        size = sum(objects.sizes(resolve(uri, cfg.storage)).values())
        shown = uri if cfg.prompts.source else f"bundled prompt set ({uri})"
        return (f"{shown}: readable, {_bytes(size)}, {sel.stats.rows:,} prompts, "
                f"{sel.kept.num_rows:,} pass the rule filters")

    c.run("prompts", "prompts.source", read, remote=_in_a_store(uri))


def _model_users(cfg: RunConfig, stages: list[R.Stage] | tuple[R.Stage, ...]
                 ) -> dict[str, list[str]]:
    """Each model the stages name -> the config keys that name it (where its name was
    set: the stage's own key, stages.defaults.model (also for the built-in default), or
    bench.models[i])."""
    users: dict[str, list[str]] = {}
    for s in stages:
        if s.models_from == "bench.models":
            for i, name in enumerate(cfg.bench.models):
                users.setdefault(name, []).append(f"bench.models[{i}]")
            continue
        if s.models_from:
            continue
        # Not its own: stages.defaults.model, or the built-in default that key overrides.
        own = getattr(cfg.stages, s.name).model
        key = f"stages.{s.name}.model" if own is not None else "stages.defaults.model"
        keys = users.setdefault(s.model(cfg), [])
        if key not in keys:
            keys.append(key)
    return users


def _models(c: _Checker, cfg: RunConfig, users: dict[str, list[str]]) -> None:
    """Per model: it resolves; its engine can run; its weights in a store are readable; one
    engine fits the cluster."""
    from persona_gen.engines.factory import resolve_spec

    specs: dict[str, ModelSpec] = {}
    for name, keys in users.items():
        def resolved(name: str = name) -> str:
            spec = resolve_spec(name)
            specs[name] = spec
            where = f", {spec.source}" if spec.source else ""
            return f"{name}: engine {spec.engine}{where}"

        c.run("model", ", ".join(keys), resolved)
    if not specs:
        return
    cluster = _cluster(c, cfg)
    local = cluster is not None and cluster.local
    for name, spec in specs.items():
        c.run("engine", f"model {name}", lambda spec=spec: _engine(spec, cfg, local))
        if spec.engine == "vllm" and spec.source and _in_a_store(spec.source):
            c.run("model source", f"model {name}: source",
                  lambda spec=spec: _weights(str(spec.source), cfg), remote=True)
    if cluster is None:
        return
    for name, spec in specs.items():
        c.run("layout", f"model {name}", lambda spec=spec: _layout(spec, cfg, cluster))


def _cluster(c: _Checker, cfg: RunConfig) -> ClusterOffer | None:
    from persona_gen.pipeline import cluster

    key = "pipeline.ray_address" if cfg.pipeline.ray_address or not os.environ.get(
        "RAY_ADDRESS") else "RAY_ADDRESS"
    found: list[ClusterOffer] = []

    def probe() -> str:
        offer = cluster.offer(cfg.pipeline)
        if offer is None:
            return "not checked: a Ray Client or dashboard address cannot be asked for its nodes"
        found.append(offer)
        return offer.describe()

    c.run("cluster", key, probe)
    return found[0] if found else None


def _engine(spec: ModelSpec, cfg: RunConfig, local: bool) -> str:
    """Whether the model's engine can run where the run will put it."""
    from persona_gen.engines.sources import classify

    if spec.engine == "echo":
        return "echo: no model, runs anywhere"
    if spec.engine == "sim":
        return "sim: a simulated server (time only), placed like a GPU engine"
    if spec.engine == "openai":
        detail = f"OpenAI-compatible server at {spec.base_url}"
        if local:
            url = urlparse(str(spec.base_url))
            port = url.port or (443 if url.scheme == "https" else 80)
            try:
                socket.create_connection((url.hostname or "", port), timeout=5).close()
            except OSError as exc:
                raise UserError(f"no server answers at {spec.base_url} "
                                f"({exc.strerror or type(exc).__name__})") from None
            detail += ": reachable"
        if spec.api_key_env and not os.environ.get(spec.api_key_env):
            if local:
                raise UserError(f"set the environment variable {spec.api_key_env} (the model "
                                "file's api_key_env): the engine sends it as its API key")
            detail += f"; {spec.api_key_env} is not set here, the cluster's workers need it"
        return detail
    gpu_run = cfg.pipeline.num_gpus_per_actor > 0 or spec.tensor_parallel_size > 1
    if not gpu_run and "cpu" not in spec.runs_on:
        raise UserError(f"runs on GPUs only (runs_on: {', '.join(spec.runs_on)}) but "
                        "pipeline.num_gpus_per_actor is 0, a CPU run; set "
                        "pipeline.num_gpus_per_actor: 1 (or pick a model that runs on CPU)")
    if gpu_run and "gpu" not in spec.runs_on:
        raise UserError(f"runs on CPU only (runs_on: {', '.join(spec.runs_on)}) but "
                        f"pipeline.num_gpus_per_actor is {cfg.pipeline.num_gpus_per_actor:g}")
    src = classify(str(spec.source))
    if local and importlib.util.find_spec("vllm") is None:
        extra = "gpu" if gpu_run else "cpu"
        raise UserError(f"vLLM is not installed here; install persona-gen[{extra}]")
    if src.kind == "local" and local:
        folder = Path(src.value).expanduser()
        if not (folder / "config.json").is_file():
            raise UserError(f"'{folder}' is not a Hugging Face model folder (no config.json)",
                            source=f"model {spec.name}: source")
    how = {"bundled": "bundled weights", "local": "a local folder",
           "store": "weights on object storage", "hf": "a Hugging Face id, downloaded by vLLM "
           "when the engine starts (not checked here)"}[src.kind]
    return f"vllm on {'GPU' if gpu_run else 'CPU'}, {how}"


def _weights(uri: str, cfg: RunConfig) -> str:
    found = objects.sizes(resolve(uri, cfg.storage))
    if not found:
        raise UserError("nothing under this prefix (expected a Hugging Face model folder)",
                        source=uri)
    if not any(p.rsplit("/", 1)[-1] == "config.json" for p in found):
        raise UserError("no config.json under this prefix: not a Hugging Face model folder",
                        source=uri)
    n = len(found)
    return f"{uri}: readable, {_bytes(sum(found.values()))} in {n} file{'s' if n != 1 else ''}"


def _layout(spec: ModelSpec, cfg: RunConfig, offer: ClusterOffer) -> str:
    from persona_gen.pipeline.cluster import engine_needs, fit_problem
    from persona_gen.pipeline.engine_host import engine_layout

    layout = engine_layout(spec, cfg.pipeline)
    problem = fit_problem(layout, cfg.pipeline, offer)
    if problem:
        if offer.where.startswith("a local"):  # not a cluster: this machine
            problem += " (to check against a cluster, run this where RAY_ADDRESS names it)"
        raise UserError(problem)
    cpus, gpus = engine_needs(layout, cfg.pipeline)
    each = f"{cpus:g} CPU" + (f", {gpus:g} GPU" if gpus else ", no GPU")
    if gpus and layout.accelerator_type:
        each += f" ({layout.accelerator_type})"
    return f"{layout.engines} engine{'s' if layout.engines != 1 else ''} x ({each}): fits"


def _table_there(uri: str, what: str, cfg: RunConfig) -> str:
    found = objects.sizes(resolve(uri, cfg.storage))
    parquet = {p: n for p, n in found.items() if p.endswith(".parquet")}
    if not parquet:
        raise UserError(f"no {what} here; build them first or pass --{what} FILE", source=uri)
    n = len(parquet)
    return f"{uri}: {_bytes(sum(parquet.values()))} in {n} Parquet file{'s' if n != 1 else ''}"


def _bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1000
    return f"{n} B"

