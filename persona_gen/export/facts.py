"""What the dataset card says about a run, read from its manifest and files.

Every fact is optional: a run made by an older or newer version of persona-gen may lack a
count, a report or a column, and the card then says so rather than guessing.
"""

from __future__ import annotations

import json
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
    flagged: bool


@dataclass(frozen=True)
class Fidelity:
    origin: str
    """'report' (the run's fidelity.json), 'computed' (at export) or 'absent'."""
    note: str
    n: int | None = None
    threshold: float | None = None
    attributes: tuple[AttributeTVD, ...] = ()


def _from_report(report: dict[str, Any], origin: str, note: str) -> Fidelity:
    return Fidelity(origin, note, report.get("n"), report.get("threshold"), tuple(
        AttributeTVD(a["attribute"], a["tvd"], a["noise_floor"], a["flagged"])
        for a in report.get("attributes", [])))


def fidelity(ref: RunRef, manifest: dict[str, Any], compute: bool) -> Fidelity:
    """The run's census fidelity report if it has one; else computed from its census draw
    and the census files named in its config, where those are still readable."""
    report_loc = ref.child(S.FIDELITY)
    if objects.exists(report_loc):
        return _from_report(objects.read_json(report_loc), "report", f"from `{S.FIDELITY}`")
    draw = ref.child(S.CENSUS_DRAW)
    census = dig(manifest.get("config"), "census") or {}
    sources = census.get("sources") or []
    if not objects.exists(draw):
        return Fidelity("absent", f"the run has no census draw (`{S.CENSUS_DRAW}`)")
    if not compute:
        return Fidelity("absent", "not computed (`--no-fidelity`)")
    if not sources:
        return Fidelity("absent", "the manifest names no census sources")
    from persona_gen.census.fidelity import DEFAULT_THRESHOLD, fidelity_report

    # The population is re-read from the census files the run sampled; the draw carries
    # the filters and layout it was drawn with.
    threshold = dig(census, "fidelity.threshold") or DEFAULT_THRESHOLD
    try:
        report = fidelity_report(sources, objects.read_table(draw), sample_name=draw.uri,
                                 threshold=threshold,
                                 block_bytes=int(census.get("block_mb") or 2) << 20)
    except (UserError, OSError) as exc:
        get_logger(stage="export").warning("fidelity_not_computed", reason=str(exc))
        return Fidelity("absent", f"not computable: {exc}")
    names = ", ".join(f"`{PurePosixPath(s).name}`" for s in sources)
    return _from_report(json.loads(report.model_dump_json()), "computed",
                        f"computed at export from `{S.CENSUS_DRAW}` against {names}")


@dataclass(frozen=True)
class PromptLicence:
    source: str
    licence: str
    hub_id: str
    """The Hub's licence identifier for the card's YAML header."""


def prompt_licence(manifest: dict[str, Any]) -> PromptLicence:
    source = dig(manifest.get("config"), "prompts.source")
    if not source:
        return PromptLicence("persona-gen's bundled prompt set (`persona_gen/prompts/data/"
                             "prompts.jsonl`)", "the project's own, Apache-2.0", "apache-2.0")
    name = PurePosixPath(str(source)).name
    if "prism" in str(source).lower():
        return PromptLicence(f"PRISM (`{name}`)", "CC-BY-4.0 (Kirk et al., 2024)", "cc-by-4.0")
    return PromptLicence(f"`{name}`", "not known to persona-gen: state the source's licence "
                         "here before publishing", "unknown")


def consistency(manifest: dict[str, Any]) -> list[str]:
    """The persona consistency checks' outcome, from the manifest's persona counts."""
    counts = dig(manifest, "counts.personas")
    if not isinstance(counts, dict):
        return []
    lines = []
    if counts.get("requested") is not None:
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
