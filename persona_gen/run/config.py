"""A run's configuration: one YAML file, one section per part of the method, and a
`stages` section with one `StageSettings` per model stage.

    stages:
      defaults: {model: llama-3.1-8b-instruct}     # what a stage leaves unset
      critique: {max_tokens: 384, temperature: 0.7}
      consistency: {enabled: true, max_tokens: 96}

The `stages` section is made from the recipe's declarations (persona_gen.run.recipe): a
stage added there has its settings here, typed by its class's `settings_type`. Keys from
before `stages` existed (`feedback.critique_max_tokens`, `personas.judge_model`, ...) and
`census.n` (now `personas.n`: the personas a run keeps) are still read, each with one
deprecation line naming its new key, so older configs and the manifests of older runs
still load and resume.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, create_model, field_validator, model_validator

from persona_gen.bench.config import BenchConfig
from persona_gen.census.config import CensusConfig
from persona_gen.config.base import StrictModel
from persona_gen.config.loader import apply_overrides, load_yaml_model, validate_model
from persona_gen.errors import ConfigError
from persona_gen.log import get_logger
from persona_gen.personas.config import PersonasConfig
from persona_gen.pipeline.config import PipelineConfig
from persona_gen.pipeline.settings import SharedDefaults
from persona_gen.pipeline.template import load as load_template
from persona_gen.plan.config import PlanConfig
from persona_gen.prompts.config import PromptsConfig
from persona_gen.run import recipe as R
from persona_gen.storage.settings import S3Settings


class RunSection(StrictModel):
    output: str = "./out"
    """Root URI for runs: a path (local or a shared filesystem), file://, s3://, gs:// or
    az://bucket/prefix. A run lives at <output>/<run_id>/."""
    run_id: str | None = None
    """Reuse a run id to resume that run; default: a new id from the time and config."""
    seed: int = 0
    """Master seed: every stage derives its own seed from this one."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Lowest level logged by the driver and every Ray worker (any case: info, INFO)."""
    progress_every_s: float = Field(default=30.0, gt=0)
    """Seconds between progress lines (one INFO line per active stage: rows done/planned,
    rows/s, ETA, errors) and manifest heartbeats."""
    stale_after_s: float = Field(default=300.0, gt=0)
    """A `running` manifest whose heartbeat is older than this shows as `stale` (its driver
    was killed, or lost storage). Must exceed progress_every_s."""

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _stale_after_heartbeat(self) -> RunSection:
        if self.stale_after_s <= self.progress_every_s:
            raise ValueError(f"stale_after_s ({self.stale_after_s:g}) must exceed "
                             f"progress_every_s ({self.progress_every_s:g}), the heartbeat")
        return self


def stages_model() -> type[StrictModel]:
    """The `stages` section's model, from the recipe's stages as they are declared now."""
    fields: dict[str, Any] = {"defaults": (SharedDefaults, Field(default_factory=SharedDefaults))}
    for s in R.all_stages():
        fields[s.name] = (s.kind.settings_type, Field(default_factory=s.kind.settings_type))
    return create_model("StagesConfig", __base__=StrictModel, **fields)


StagesConfig = stages_model()
"""`stages:` one field per declared stage (its settings type), plus `defaults`."""


# ---- keys from before `stages` ------------------------------------------------------------
_TEXT = ("original", "critique", "revision")
MOVED: dict[str, tuple[str, ...]] = {
    **{f"feedback.{s}_max_tokens": (f"stages.{s}.max_tokens",) for s in (*_TEXT, "verify")},
    **{f"feedback.{s}_retry_max_tokens": (f"stages.{s}.retry_max_tokens",)
       for s in (*_TEXT, "verify")},
    "feedback.model": tuple(f"stages.{s}.model" for s in _TEXT),
    "feedback.temperature": tuple(f"stages.{s}.temperature" for s in _TEXT),
    "feedback.top_p": tuple(f"stages.{s}.top_p" for s in _TEXT),
    "feedback.judge_model": ("stages.verify.model",),
    "feedback.verify": ("stages.verify.enabled",),
    "personas.enrich_model": ("stages.enrich.model",),
    "personas.enrich_max_tokens": ("stages.enrich.max_tokens",),
    "personas.enrich_retry_max_tokens": ("stages.enrich.retry_max_tokens",),
    "personas.enrich_temperature": ("stages.enrich.temperature",),
    "personas.enrich_field_max_chars": ("stages.enrich.field_max_chars",),
    "personas.judge_model": ("stages.consistency.model",),
    "personas.judge_max_tokens": ("stages.consistency.max_tokens",),
    "personas.judge_retry_max_tokens": ("stages.consistency.retry_max_tokens",),
    "personas.judge_temperature": ("stages.consistency.temperature",),
    "personas.judge_reason_max_chars": ("stages.consistency.reason_max_chars",),
    "personas.model_consistency_check": ("stages.consistency.enabled",),
    "bench.judge_model": ("stages.bench_judge.model",),
    "bench.judge_max_tokens": ("stages.bench_judge.max_tokens",),
    "bench.judge_temperature": ("stages.bench_judge.temperature",),
    "bench.judge_critique_chars": ("stages.bench_judge.critique_chars",),
    "bench.temperature": ("stages.bench_answer.temperature",),
    "bench.max_tokens": ("stages.bench_answer.max_tokens",),
    "bench.max_tokens_by_mode": ("stages.bench_answer.max_tokens_by_mode",),
    # The number of personas is what a run keeps, not what it first draws (issue 23).
    "census.n": ("personas.n",),
}
"""Old key -> the new key(s) it sets."""
FALLBACK: dict[str, tuple[str, ...]] = {
    "feedback.max_tokens": tuple(f"stages.{s}.max_tokens" for s in _TEXT),
}
"""Old keys that only filled what the more specific old keys left unset."""
DROPPED = {"personas.batch_size": "it was never used by the pipeline",
           "prompts.classifier_batch_size": "the pipeline's batch_size sizes every call"}


def _pop(data: dict[str, Any], dotted: str) -> tuple[bool, Any]:
    section, key = dotted.split(".")
    node = data.get(section)
    if not isinstance(node, dict) or key not in node:
        return False, None
    node = dict(node)
    value = node.pop(key)
    data[section] = node
    return True, value


def _set(data: dict[str, Any], dotted: str, value: Any, old: str, fallback: bool) -> None:
    node = data
    parts = dotted.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        child = dict(child) if isinstance(child, dict) else {}
        node[part] = child
        node = child
    key = parts[-1]
    if key in node and node[key] is not None:
        if fallback or node[key] == value:
            return
        raise ConfigError(f"both '{old}' (deprecated) and '{dotted}' are set, to "
                          f"{value!r} and {node[key]!r}; keep '{dotted}'")
    node[key] = value


def migrate(data: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Config data with every old key moved to its `stages` key; and (old, new) per move."""
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    moves: list[tuple[str, str]] = []
    for table, fallback in ((MOVED, False), (FALLBACK, True)):
        for old, new in table.items():
            found, value = _pop(data, old)
            if not found:
                continue
            for key in new:
                _set(data, key, value, old, fallback)
            moves.append((old, " / ".join(new)))
    found, model = _pop(data, "prompts.classifier_model")
    if found:
        # null used to switch the filter off; a name chose its model.
        if model is None:
            _set(data, "stages.controversy.enabled", False, "prompts.classifier_model", False)
            moves.append(("prompts.classifier_model: null", "stages.controversy.enabled: false"))
        else:
            _set(data, "stages.controversy.model", model, "prompts.classifier_model", False)
            moves.append(("prompts.classifier_model", "stages.controversy.model"))
    for old, why in DROPPED.items():
        if _pop(data, old)[0]:
            moves.append((old, f"nothing ({why})"))
    for section in ("feedback",):
        if data.get(section) == {}:
            data.pop(section)
    return data, moves


# ---- the run's configuration ------------------------------------------------------------

class RunConfig(StrictModel):
    run: RunSection = Field(default_factory=RunSection)
    storage: S3Settings = Field(default_factory=S3Settings)
    census: CensusConfig = Field(default_factory=CensusConfig)
    personas: PersonasConfig = Field(default_factory=PersonasConfig)
    prompts: PromptsConfig = Field(default_factory=PromptsConfig)
    plan: PlanConfig = Field(default_factory=PlanConfig)
    stages: StagesConfig = Field(default_factory=StagesConfig)  # type: ignore[valid-type]
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    bench: BenchConfig = Field(default_factory=BenchConfig)

    @model_validator(mode="before")
    @classmethod
    def _old_keys(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict):
            return data
        data, moves = migrate(data)
        if moves and not (info.context or {}).get("quiet"):
            log = get_logger(stage="config")
            for old, new in moves:
                log.warning("deprecated_key", key=old, use=new)
        return data

    @model_validator(mode="after")
    def _stages_fit(self) -> RunConfig:
        answer = self.stages.bench_answer  # type: ignore[attr-defined]
        if answer.model is not None:
            raise ConfigError("the models under test are bench.models",
                              source="stages.bench_answer.model")
        temperature = R.settings(self, "bench_answer").temperature
        if self.bench.k > 1 and temperature == 0.0:
            raise ConfigError("bench.k > 1 needs temperature > 0, otherwise every sample is "
                              "the same", source="stages.bench_answer.temperature")
        for s in R.all_stages():
            if s.settings(self).thinking == "on":
                s.build(self)  # refuses a stage with no thinking switch, naming its key
            value = getattr(self.stages, s.name).template
            if value is not None:
                where = f"stages.{s.name}.template"
                load_template(value, where).check(s.kind.variables, where)
        return self


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> RunConfig:
    """Load the run's configuration; with no path, the defaults plus overrides. A problem is
    a ConfigError naming the file and the dotted key."""
    if path is None:
        return validate_model(RunConfig, apply_overrides({}, overrides or []), "--set")
    return load_yaml_model(RunConfig, path, overrides)


def normalized(config: dict[str, Any]) -> RunConfig:
    """A stored config (a manifest's, possibly in older keys) read as today's, quietly."""
    try:
        return RunConfig.model_validate(config, context={"quiet": True})
    except (ValueError, ConfigError) as exc:
        raise ConfigError(f"the stored configuration no longer loads: {exc}") from None
