"""What the dataset card says about a run, read from its manifest and files.

Every fact is optional: a run made by an older or newer version of persona-gen may lack a
count, a report or a column, and the card then says so rather than guessing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from persona_gen.errors import UserError
from persona_gen.export import sources as S
from persona_gen.log import get_logger
from persona_gen.storage import objects
from persona_gen.storage.runref import RunRef


def dig(obj: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


@dataclass(frozen=True)
class StageModel:
    stage: str
    model: str
    weights: str
    """Where the model's weights come from (the registry's `model` / `source`), or '-'."""
    done: int | None
    errors: int | None


def stage_models(manifest: dict[str, Any]) -> list[StageModel]:
    """The model each stage of the run used, in the order the manifest lists stages."""
    models = manifest.get("models") or {}
    stages = manifest.get("stages") or {}
    known = list(S.JOB_STAGES)
    # The run's order (manifests store stages sorted by name); unknown stages last.
    order = sorted(stages, key=lambda s: (known.index(s) if s in known else len(known), s))
    out = []
    for stage in order:
        info = stages[stage]
        info = info if isinstance(info, dict) else {}
        name = info.get("model") or S.stage_model(manifest, stage)
        spec = models.get(name) or {}
        out.append(StageModel(stage, str(name or "not recorded"),
                              str(spec.get("model") or spec.get("source") or "-"),
                              info.get("done"), info.get("errors")))
    return out


@dataclass(frozen=True)
class AttributeTVD:
    attribute: str
    tvd: float
    noise_floor: float
    """Expected TVD of an ideal weighted draw of the same n."""
    noise_p95: float | None
    """Its 95th percentile (None in reports from before the noise band)."""
    flagged: bool


@dataclass(frozen=True)
class Fidelity:
    origin: str
    """'report' (the run's fidelity.json), 'computed' (at export) or 'absent'."""
    note: str
    n: int | None = None
    threshold: float | None = None
    attributes: tuple[AttributeTVD, ...] = ()
    rule: str = ""
    """What flagged an attribute, in words."""


def fidelity_rule(report: dict[str, Any]) -> str:
    """A stored report's flag rule, in words (reports from before the noise band had a
    fixed threshold only)."""
    threshold = report.get("threshold")
    if threshold is not None:
        return f"TVD above the fixed threshold {threshold:g}"
    return ("TVD above the 95th percentile of an ideal weighted draw of the same n "
            f"({int(report.get('noise_draws') or 0):,} simulated draws)")


def fidelity_from_report(report: dict[str, Any], origin: str, note: str) -> Fidelity:
    return Fidelity(origin, note, report.get("n"), report.get("threshold"), tuple(
        AttributeTVD(a["attribute"], a["tvd"], a["noise_floor"], a.get("noise_p95"),
                     a["flagged"])
        for a in report.get("attributes", [])), fidelity_rule(report))


def fidelity(ref: RunRef, manifest: dict[str, Any], compute: bool) -> Fidelity:
    """The run's census fidelity report if it has one; else computed for its kept personas
    from its census draw and the census files named in its config, where those are still
    readable."""
    report_loc = ref.child(S.FIDELITY)
    if objects.exists(report_loc):
        return fidelity_from_report(objects.read_json(report_loc), "report",
                                    f"from `{S.FIDELITY}`")
    draw = ref.child(S.CENSUS_DRAW)
    census = dig(manifest.get("config"), "census") or {}
    sources = census.get("sources") or []
    if not objects.exists(draw):
        return Fidelity("absent", f"the run has no census draw (`{S.CENSUS_DRAW}`)")
    if not compute:
        return Fidelity("absent", "not computed (`--no-fidelity`)")
    if not sources:
        return Fidelity("absent", "the manifest names no census sources")
    from persona_gen.census.fidelity import NOISE_DRAWS, fidelity_report, kept_sample

    # The population is re-read from the census files the run sampled; the draw carries
    # the filters and layout it was drawn with, the personas table who was kept.
    try:
        sample = objects.read_table(draw)
        personas = ref.child(S.PERSONAS)
        if objects.exists(personas):
            sample = kept_sample(sample, objects.read_table(personas))
        report = fidelity_report(
            sources, sample, sample_name="kept personas",
            threshold=dig(census, "fidelity.threshold"),
            noise_draws=int(dig(census, "fidelity.noise_draws") or NOISE_DRAWS),
            block_bytes=int(census.get("block_mb") or 2) << 20)
    except (UserError, OSError) as exc:
        get_logger(stage="export").warning("fidelity_not_computed", reason=str(exc))
        return Fidelity("absent", f"not computable: {_no_uri(str(exc))}")
    names = ", ".join(f"`{PurePosixPath(s).name}`" for s in sources)
    return fidelity_from_report(json.loads(report.model_dump_json()), "computed",
                                f"computed at export against {names}")


def _no_uri(text: str) -> str:
    """A message with its locations cut to their last part (the card names no run URI)."""
    return re.sub(r"(?:[a-z0-9]+://|/)[^\s:,;()`']*/([^\s/:,;()`']+)", r"\1", text)


@dataclass(frozen=True)
class PromptLicence:
    source: str
    licence: str
    hub_id: str
    """The Hub's licence identifier for the card's YAML header."""
    dataset: str | None = None
    """The prompts' dataset on the Hub (the card's `source_datasets`), where known."""
    creators: str = "other"
    """Who wrote the prompts, in the Hub's `language_creators` words."""


PRISM_HUB_ID = "HannahRoseKirk/prism-alignment"


def prompt_licence(manifest: dict[str, Any]) -> PromptLicence:
    source = dig(manifest.get("config"), "prompts.source")
    if not source:
        return PromptLicence("persona-gen's bundled prompt set (`persona_gen/prompts/data/"
                             "prompts.jsonl`)", "the project's own, Apache-2.0", "apache-2.0",
                             creators="expert-generated")
    name = PurePosixPath(str(source)).name
    if "prism" in str(source).lower():
        # PRISM's opening prompts were written by its crowdworkers (Kirk et al., 2024).
        return PromptLicence(f"PRISM (`{name}`)", "CC-BY-4.0 (Kirk et al., 2024)", "cc-by-4.0",
                             dataset=PRISM_HUB_ID, creators="crowdsourced")
    return PromptLicence(f"`{name}`", "not known to persona-gen: state the source's licence "
                         "here before publishing", "unknown")


@dataclass(frozen=True)
class ModelTerms:
    model: str
    stages: tuple[str, ...]
    terms: Any
    """persona_gen.export.licence.Terms, or None for an engine that runs no model."""


def model_terms(manifest: dict[str, Any], models: list[StageModel]) -> list[ModelTerms]:
    """The terms each model's outputs come under, with the stages that used it."""
    from persona_gen.export.licence import model_terms as terms_of

    specs = manifest.get("models") or {}
    by_model: dict[str, list[str]] = {}
    for m in models:
        if m.model != "not recorded":
            by_model.setdefault(m.model, []).append(m.stage)
    return [ModelTerms(name, tuple(stages), terms_of(name, specs.get(name)))
            for name, stages in by_model.items()]


def consistency(manifest: dict[str, Any]) -> list[str]:
    """The persona build's outcome, from the manifest's persona counts: people drawn, the
    rejects by rule and by judge, kept."""
    counts = dig(manifest, "counts.personas")
    if not isinstance(counts, dict):
        return []
    lines = []
    drop = counts.get("on_inconsistent") == "drop"
    if counts.get("drawn") is not None:
        lines.append(
            f"personas: {counts.get('kept', 0):,} kept of {counts['requested']:,} asked for "
            f"(`on_inconsistent: {counts.get('on_inconsistent')}`); census people drawn "
            f"{counts['drawn']:,}; rejected by the rules {counts.get('rejected_by_rule', 0):,}, "
            f"by the model judge {counts.get('rejected_by_judge', 0):,}"
            + (f"; unusable model output {counts.get('unusable', 0):,}; passed but beyond "
               f"the count in draw order {counts.get('surplus', 0):,}" if drop else
               f"; slots redrawn {counts.get('resampled', 0):,}, dropped "
               f"{counts.get('dropped', 0):,}"))
    elif counts.get("requested") is not None:
        lines.append(f"personas requested {counts['requested']:,}, kept "
                     f"{counts.get('kept', 0):,}, resampled {counts.get('resampled', 0):,}, "
                     f"dropped {counts.get('dropped', 0):,}")
    rejections = counts.get("rejections") or {}
    total = sum(int(v) for v in rejections.values())
    lines.append(f"rejections by the consistency checks: {total:,}" + (
        " (" + ", ".join(f"{k} {int(v):,}" for k, v in sorted(rejections.items())) + ")"
        if rejections else ""))
    invalid = counts.get("invalid_outputs") or {}
    if invalid:
        lines.append("invalid model outputs: " + ", ".join(
            f"{k} {int(v):,}" for k, v in sorted(invalid.items())))
    return lines


def _in_run_order(recorded: dict[str, Any]) -> dict[str, Any]:
    known = list(S.JOB_STAGES)
    order = sorted(recorded, key=lambda s: (known.index(s) if s in known else len(known), s))
    return {k: recorded[k] for k in order if isinstance(recorded[k], dict)}


def settings(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each stage's resolved settings as the run recorded them, in the order the run runs
    its stages (empty for older runs)."""
    return _in_run_order(manifest.get("settings") or {})


def templates(manifest: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Each stage's prompt template (source, sha256, text) as the run recorded it."""
    return _in_run_order(manifest.get("templates") or {})


CONFIG_NOTE = ("# The resolved configuration of this dataset's run (persona-gen), as its manifest\n"
               "# recorded it. Input locations are cut to their file names; the storage\n"
               "# settings, output location and Ray address are left out: they named the\n"
               "# publisher's machines.\n")


def _file_names(value: Any) -> Any:
    if isinstance(value, str) and ("/" in value or "://" in value):
        return PurePosixPath(value.split("://", 1)[-1]).name or value
    if isinstance(value, list):
        return [_file_names(v) for v in value]
    return value


def public_config(manifest: dict[str, Any]) -> dict[str, Any]:
    """The run's resolved config to publish beside the data: the same keys, without the
    places only the publisher can reach (output, storage endpoint; input paths become file
    names)."""
    config = json.loads(json.dumps(manifest.get("config") or {}))
    config.pop("storage", None)
    run = config.get("run")
    if isinstance(run, dict):
        run.pop("output", None)
    pipeline = config.get("pipeline")
    if isinstance(pipeline, dict):
        pipeline.pop("ray_address", None)
    for section, key in (("census", "sources"), ("prompts", "source"),
                         ("census", "download")):
        node = config.get(section)
        if isinstance(node, dict) and key in node:
            if key == "download":
                node.pop(key)
            else:
                node[key] = _file_names(node[key])
    for _name, stage in (config.get("stages") or {}).items():
        if isinstance(stage, dict) and isinstance(stage.get("template"), str) \
                and "\n" not in stage["template"]:
            stage["template"] = _file_names(stage["template"])
    return config
