"""The dataset card: a YAML header the Hub reads (licence, sources, creators, configs,
splits, features) and a body for the reader: how to load and select, what was filtered,
an example row, how every row was made (models, sampling settings, templates, the resolved
config beside the data), the personas and their census fidelity, bias and limitations,
licences and citation. It names no location of the run (no internal URI); how to upload
is the publisher's business (README, `export --help`), not the reader's."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import pyarrow as pa
import yaml

from persona_gen.export import licence
from persona_gen.export.facts import Fidelity, ModelTerms, PromptLicence, StageModel
from persona_gen.export.rows import PERSONA_FRAME, DataFormat, PersonaTurn
from persona_gen.export.shards import SplitFiles

PERSONA_ARXIV = "2407.17387"


def feature(typ: pa.DataType) -> dict[str, Any]:
    """One Arrow type in the card's `features` notation (what `datasets.Features` reads)."""
    if pa.types.is_dictionary(typ):
        return feature(typ.value_type)
    if pa.types.is_struct(typ):
        return {"struct": [{"name": f.name, **feature(f.type)} for f in typ]}
    if pa.types.is_list(typ) or pa.types.is_large_list(typ):
        inner = feature(typ.value_type)
        if "dtype" in inner:
            return {"list": inner["dtype"]}
        return {"list": inner.get("struct", inner)}
    return {"dtype": str(typ)}


def features(schema: pa.Schema) -> list[dict[str, Any]]:
    return [{"name": f.name, **feature(f.type)} for f in schema]


@dataclass(frozen=True)
class ConfigFiles:
    """One `datasets` config: a folder of split shards with one schema."""

    name: str
    folder: str
    schema: pa.Schema
    splits: tuple[SplitFiles, ...]


@dataclass(frozen=True)
class Dropped:
    """What each step of the DPO filter drops in one split: first the verdict, then, of the
    pairs left, the token limit."""

    original: int
    """The judge preferred the original answer."""
    unjudged: int
    """No verdict (verification failed or was not run for the pair)."""
    cut: int = 0
    """Of the pairs the verdict step keeps: the original or the revision was cut at its
    stage's token limit (finish reason `length`)."""

    def applied(self, verified: bool, complete: bool) -> int:
        return (self.original + self.unjudged if verified else 0) + (self.cut if complete else 0)


def filter_words(f: Any) -> str:
    """A PairFilter in words."""
    parts = []
    if f.verified:
        parts.append("the judge preferred the revision")
    if f.complete:
        parts.append("neither the original nor the revision was cut at its token limit")
    return "pairs where " + " and ".join(parts) if parts else "every pair"


@dataclass(frozen=True)
class CardFacts:
    run_id: str
    status: str
    code_version: str
    seed: Any
    created_at: str
    fmt: DataFormat
    configs: tuple[ConfigFiles, ...]
    stage_models: tuple[StageModel, ...]
    fidelity: Fidelity
    consistency: tuple[str, ...]
    verdicts: dict[str, int] | None
    """Verdicts over the run's pairs ('revision', 'original'); None when it ran no judge."""
    pair_filter: Any
    """persona_gen.export.writer.PairFilter: what this export kept."""
    dropped: dict[str, Dropped] | None
    """Per split, what each step of the DPO filter drops (applied or not)."""
    truncated: dict[str, int] | None
    """Rows that hit max_tokens, per `<stage>_finish_reason` column; None: not recorded."""
    prompts: PromptLicence
    model_terms: tuple[ModelTerms, ...] = ()
    persona_turn: PersonaTurn = PersonaTurn.system
    example: dict[str, Any] | None = None
    """One published row (first of the first split), shown truncated."""
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    templates: dict[str, dict[str, str]] = field(default_factory=dict)
    finish_recorded: tuple[str, ...] = ()
    """Which of the two sides' finish-reason columns the run's pairs have."""


def _size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                         (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")):
        if n < limit:
            return label
    return "10M<n<100M"


def header(f: CardFacts) -> dict[str, Any]:
    rows = sum(s.rows for s in f.configs[0].splits)
    sources = ["original"] + ([f.prompts.dataset] if f.prompts.dataset else [])
    return {
        "pretty_name": f"PERSONA-style persona preference pairs ({f.run_id})",
        **licence.header_fields(f.prompts.hub_id, [m.terms for m in f.model_terms]),
        "language": ["en"],
        "multilinguality": ["monolingual"],
        # Personas are census draws; the texts and verdicts are model outputs.
        "source_datasets": sources,
        "annotations_creators": ["machine-generated"],
        "language_creators": list(dict.fromkeys(["machine-generated", f.prompts.creators])),
        "task_categories": ["text-generation"],
        "tags": ["dpo", "preference", "pluralistic-alignment", "personas", "synthetic",
                 "persona-gen"],
        "size_categories": [_size_category(rows)],
        "configs": [
            {"config_name": c.name, **({"default": True} if i == 0 else {}),
             "data_files": [{"split": s.split, "path": f"{c.folder}/{s.split}-*"}
                            for s in c.splits if s.files]}
            for i, c in enumerate(f.configs)],
        "dataset_info": [
            {"config_name": c.name, "features": features(c.schema),
             "splits": [{"name": s.split, "num_bytes": s.num_bytes, "num_examples": s.rows}
                        for s in c.splits if s.files],
             "download_size": sum(s.file_bytes for s in c.splits),
             "dataset_size": sum(s.num_bytes for s in c.splits)}
            for c in f.configs],
    }


def _table(head: tuple[str, ...], rows: list[tuple[Any, ...]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    out += ["| " + " | ".join(str(v) for v in r) + " |" for r in rows]
    return out


def _n(v: int | None) -> str:
    return "-" if v is None else f"{v:,}"


EXAMPLE_CHARS = 160
"""Characters of each text shown in the example row."""
SETTING_KEYS = ("model", "temperature", "top_p", "max_tokens", "retry_max_tokens", "n")


def _short(value: Any, limit: int = EXAMPLE_CHARS) -> Any:
    """A value with every text cut for display."""
    if isinstance(value, str):
        return value if len(value) <= limit else value[:limit].rstrip() + " [...]"
    if isinstance(value, list):
        return [_short(v, limit) for v in value]
    if isinstance(value, dict):
        return {k: _short(v, limit) for k, v in value.items()}
    return value


def _loading() -> list[str]:
    return [
        "## Loading", "", "```python", "from datasets import load_dataset", "",
        'pairs = load_dataset("<namespace>/<name>")              # or this folder\'s path',
        'personas = load_dataset("<namespace>/<name>", "personas")', "",
        "# Train on the train personas' train pairs:",
        'train = pairs["train"].filter(lambda r: r["persona_split"] == "train")',
        "# Test on held-out personas (people never trained on):",
        'unseen_people = pairs["test"].filter(lambda r: r["persona_split"] == "test")',
        "# Test on held-out prompts (questions never trained on):",
        'unseen_prompts = pairs["test"].filter(lambda r: r["prompt_split"] == "heldout")',
        "```", ""]


def _splits(f: CardFacts) -> list[str]:
    out = ["## Splits", "",
           "Three split notions, one per column; the Hub's `train` and `test` splits follow "
           "the first, as the paper's release did (PERSONA, "
           f"arXiv {PERSONA_ARXIV}: feedback pairs).", ""]
    out += _table(("column", "values", "what it says", "Hub split"), [
        ("`question_type`", "`train`, `test`", "the pair's role in the paper's design: each "
         "persona has train pairs on train prompts and test pairs on seen and held-out "
         "prompts", "`train` = `question_type == train`; `test` = `question_type == test`"),
        ("`persona_split`", "`train`, `test`", "the persona's split: test personas are held "
         "out as people (paper: 586 of 1,586)", "both: filter on it"),
        ("`prompt_split`", "`train`, `heldout`", "the prompt's split: held-out prompts are "
         "never in a train pair", "`test` only: filter on it"),
    ])
    out += ["", "So the Hub's `train` split also holds the test personas' train pairs, and "
            "`test` holds the train personas' test pairs, on seen and on held-out prompts: "
            "select with the recipes under Loading.", ""]
    out += _table(("config", "split", "rows", "files"), [
        (c.name, s.split, f"{s.rows:,}", len(s.files)) for c in f.configs for s in c.splits])
    if any(not s.files for c in f.configs for s in c.splits):
        out += ["", "A split with no rows has no files and is not declared in the header "
                "(`datasets` cannot load an empty split)."]
    return [*out, ""]


def _filter(f: CardFacts) -> list[str]:
    keep = f.pair_filter
    out = ["## Pair filter", ""]
    if keep.active:
        out += [f"This export keeps {filter_words(keep)}"
                + (" (the default of the DPO formats: a DPO trainer takes every row as "
                   "\"chosen beats rejected\"; `--all-pairs` exports every pair)."
                   if f.fmt.dpo else " (`--verified-only`).")]
    else:
        out += ["This export keeps every pair" + (" (`--all-pairs`): some rows' chosen side "
                "was not preferred by the judge or was cut at its token limit; filter on "
                "`preferred` and the finish reasons before training." if f.fmt.dpo else
                ", as the paper released them; `preferred` and the finish reasons say which "
                "to trust.")]
    if f.dropped:
        applied = "dropped" if keep.active else "the DPO filter would drop"
        out += ["", f"Pairs {applied}, per split, step by step (each step counts the pairs "
                "the step before kept):", ""]
        steps = [("judge preferred the original", "original", keep.verified),
                 ("not judged", "unjudged", keep.verified),
                 ("original or revision cut at its token limit", "cut", keep.complete)]
        out += _table(("split", *(name for name, _, _ in steps)), [
            (split, *(f"{getattr(d, attr):,}" for _, attr, _ in steps))
            for split, d in f.dropped.items()])
        if f.verdicts is None:
            out += ["", "The run has no verification verdicts: the verdict step was not "
                    "counted."]
        missing = [c for c in ("original_finish_reason", "revision_finish_reason")
                   if c not in f.finish_recorded]
        if missing:
            out += ["", f"The run's pairs lack {', '.join(f'`{c}`' for c in missing)}: "
                    "those cuts are not recorded, and not filtered."]
    return [*out, ""]


def _columns(f: CardFacts) -> list[str]:
    out = ["## Columns", "",
           "`pair_id`, `persona_id`, `prompt_id`; `question_type`, `persona_split`, "
           "`prompt_split`; `preferred` (the verification judge's choice: `revision`, "
           "`original`, or empty when not judged); `<stage>_finish_reason` (`stop`, or "
           "`length` when cut at the stage's token limit)"]
    if f.fmt is not DataFormat.trl_dpo_only:
        out[-1] += ("; `persona` (the persona as `key: value` lines), `instruction` (the "
                    "prompt), `original`, `critique`, `data` (the revision), and the run's "
                    "other per-pair columns (token counts, retries).")
    else:
        out[-1] += "."
    if f.fmt.dpo:
        before, after = PERSONA_FRAME
        where = {
            PersonaTurn.system: "the system turn, then the instruction as the user turn",
            PersonaTurn.user: "the start of the user turn, before the instruction (no system "
                              "turn, for chat templates without one)",
            PersonaTurn.none: "nowhere: the user turn is the instruction alone "
                              "(a persona-blind view)",
        }[f.persona_turn]
        out += ["", "`prompt`, `chosen`, `rejected` are TRL's conversational preference "
                "format, ready for `trl.DPOTrainer`: `chosen` is the revision and `rejected` "
                "the original, each one assistant message. The persona is framed as "
                "generation framed it, as the attributes of the user being answered "
                f"({json.dumps(before + '<persona>' + after)}), and is in {where} "
                f"(`--persona-turn {f.persona_turn.value}`)."]
    if f.configs[1:]:
        out += ["", "The `personas` config holds the personas: the 33 attributes, "
                "`persona_text`, `split`, and provenance (census source and record, weight, "
                "seed, enrichment model)."]
    return [*out, ""]


def _example(f: CardFacts) -> list[str]:
    if not f.example:
        return []
    return ["## Example row", "", f"One row of this export (texts cut to {EXAMPLE_CHARS} "
            "characters here):", "", "```json",
            json.dumps(_short(f.example), indent=2, ensure_ascii=False, default=str),
            "```", ""]


def _made(f: CardFacts) -> list[str]:
    out = ["## How it was made", "",
           f"- run: `{f.run_id}` (status {f.status}), created {f.created_at or 'not recorded'}",
           f"- persona-gen code version: `{f.code_version}`",
           f"- seed: `{f.seed}`",
           "- the run's resolved configuration: [`run_config.yaml`](run_config.yaml) (input "
           "locations cut to their file names)", "", "Models per stage:", ""]
    out += _table(("stage", "model", "weights", "rows done", "errors"), [
        (m.stage, m.model, m.weights, _n(m.done), _n(m.errors)) for m in f.stage_models])
    out += ["", "### Sampling settings", ""]
    if f.settings:
        out += _table(("stage", *SETTING_KEYS, "other"), [
            (stage, *(_n(v) if isinstance(v, int) and not isinstance(v, bool) else
                      ("-" if v is None else v) for v in (st.get(k) for k in SETTING_KEYS)),
             ", ".join(f"{k} {v}" for k, v in st.items()
                       if k not in (*SETTING_KEYS, "enabled", "template")) or "-")
            for stage, st in f.settings.items()])
        out += ["", "`retry_max_tokens`: a row cut at `max_tokens` is asked again once with "
                "this limit, then kept and flagged (`<stage>_finish_reason` = `length`)."]
    else:
        out += ["Not recorded by this run's version of persona-gen."]
    out += ["", "### Prompt templates", ""]
    if f.templates:
        out += ["Each stage's prompt, as the run recorded it (Jinja: a `system` and a `user` "
                "block):", ""]
        for stage, t in f.templates.items():
            name = PurePosixPath(str(t.get("source", ""))).name or "inline"
            out += [f"<details><summary><code>{stage}</code>: {name} (sha256 "
                    f"{str(t.get('sha256', ''))[:12]})</summary>", "", "```jinja",
                    str(t.get("text", "")).rstrip(), "```", "", "</details>", ""]
    else:
        out += ["Not recorded by this run's version of persona-gen.", ""]
    return out


def _personas(f: CardFacts) -> list[str]:
    out = ["## Personas", ""]
    out += [f"- {line}" for line in f.consistency] or ["- persona counts: not recorded in the "
                                                       "manifest"]
    out += ["", "### Census fidelity", ""]
    fid = f.fidelity
    if fid.attributes:
        out += [f"Total-variation distance (TVD) between the {_n(fid.n)} kept personas and "
                f"the weighted census population, per attribute ({fid.note}). An ideal "
                "weighted draw of the same n lands above zero too: `expected` is its mean "
                "TVD and `p95` its 95th percentile (about 1 attribute in 20 lands above it by "
                f"chance). Flagged: {fid.rule or 'as the report says'}.", ""]
        out += _table(("attribute", "TVD", "expected", "p95", "flagged"), [
            (a.attribute, f"{a.tvd:.3f}", f"{a.noise_floor:.3f}",
             "-" if a.noise_p95 is None else f"{a.noise_p95:.3f}", "yes" if a.flagged else "")
            for a in fid.attributes])
    else:
        out += [f"Absent: {fid.note}."]
    return [*out, ""]


def _verification(f: CardFacts) -> list[str]:
    out = ["## Verification and truncation", ""]
    if f.verdicts is None:
        out += ["- verification: the run has no verification verdicts"]
    else:
        judged = f.verdicts.get("revision", 0) + f.verdicts.get("original", 0)
        share = f.verdicts.get("revision", 0) / judged if judged else 0.0
        out += [f"- verification: {judged:,} pairs judged; the judge preferred the revision "
                f"in {f.verdicts.get('revision', 0):,} ({share:.1%}) and the original in "
                f"{f.verdicts.get('original', 0):,} (paper: 96%); the judge writes its "
                "reason before its verdict, and sees the two answers in a per-pair random "
                "order"]
    if f.truncated is None:
        out += ["- truncated rows (generation stopped at max_tokens): not recorded"]
    else:
        out += ["- truncated rows (generation stopped at max_tokens): "
                + ", ".join(f"{col.removesuffix('_finish_reason')} {n:,}"
                            for col, n in f.truncated.items()) + " (over all the run's pairs)"]
    return [*out, ""]


BIAS = [
    "## Bias, limitations and sensitive attributes", "",
    "- **Sensitive attributes.** Personas carry race, ancestry, religion, political views, "
    "ideology, disability, health insurance, citizenship and income. They are synthetic: "
    "census records sampled by weight, with procedural traits and model-written attributes; "
    "no row describes a real, identifiable person. Do not use the data to infer anything "
    "about real people or groups.",
    "- **Stereotypes.** The written attributes, critiques and revisions come from language "
    "models, which can tie demographics to stereotyped views, tastes or needs; a revision "
    "\"tailored\" to a persona may encode such an association. Review before training on "
    "it, and evaluate models trained on it for stereotyped behaviour.",
    "- **Coverage.** Personas follow the weighted US census population of the sampled "
    "files (see Census fidelity): small groups are few, and nothing outside the US is "
    "represented. Prompts are English and reflect their source's writers.",
    "- **Consistency filter.** The rules and the model judge drop personas they find "
    "contradictory; the kept set is the census draw minus those rejects, so a judge biased "
    "against some profiles shifts the demographics (the counts above show how many).",
    "- **Machine judgement.** `preferred` comes from a model role-playing the persona, not "
    "from the person; the paper found role-play judgements close to, not equal to, human "
    "ones.",
    "- **Intended use.** Research on pluralistic alignment and personalization: training "
    "and evaluating models that serve different users differently. Not for profiling, "
    "targeting or decisions about people.", ""]


def _licence(f: CardFacts) -> list[str]:
    out = ["## Licence", "",
           "The dataset combines parts under different terms; the header's licence is "
           "derived from all of them.", "",
           "- Census microdata: ACS PUMS, US Census Bureau, a work of the US government in "
           "the public domain.",
           f"- Prompts: {f.prompts.source}; licence: {f.prompts.licence}."]
    for m in f.model_terms:
        stages = ", ".join(m.stages)
        if m.terms is None:
            out.append(f"- Model `{m.model}` ({stages}): runs no model; its text is under "
                       "no model's terms.")
        else:
            link = f" ({m.terms.link})" if m.terms.link else ""
            out.append(f"- Text generated by `{m.model}` ({stages}): {m.terms.name}{link}.")
    return [*out, ""]


def body(f: CardFacts) -> list[str]:
    out = [f"# PERSONA-style persona preference pairs: run `{f.run_id}`", "",
           "Direct Principle Feedback pairs for pluralistic alignment, generated by "
           "[persona-gen](#citation) in the manner of PERSONA "
           f"([arXiv {PERSONA_ARXIV}](https://arxiv.org/abs/{PERSONA_ARXIV})): synthetic "
           "people sampled from US census microdata (ACS PUMS), each paired with value-laden "
           "prompts; for every pair a general answer (`original`), the persona's critique of "
           "it and a revision tailored to the persona (`data`).", ""]
    out += _loading() + _splits(f) + _filter(f) + _columns(f) + _example(f) + _made(f)
    out += _personas(f) + _verification(f) + BIAS + _licence(f)
    out += ["## Citation", "", "```bibtex",
            "@article{castricato2024persona,",
            "  title   = {PERSONA: A Reproducible Testbed for Pluralistic Alignment},",
            "  author  = {Castricato, Louis and Lile, Nathan and Rafailov, Rafael and "
            "Fr{\\\"a}nken, Jan-Philipp and Finn, Chelsea},",
            f"  journal = {{arXiv preprint arXiv:{PERSONA_ARXIV}}},",
            "  year    = {2024}", "}", "",
            "@software{persona_gen,",
            "  title   = {persona-gen: census-grounded personas and persona-specific "
            "preference data},",
            f"  version = {{{f.code_version}}},",
            "  note    = {Ray Data + vLLM batch job reproducing the PERSONA testbed}", "}",
            "```", ""]
    return out


def render(f: CardFacts) -> str:
    head = yaml.safe_dump(header(f), sort_keys=False, allow_unicode=True)
    return "---\n" + head + "---\n\n" + "\n".join(body(f))
