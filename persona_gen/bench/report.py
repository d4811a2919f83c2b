"""`bench report`: read a run's bench/ tables, write Markdown + PNG plots, return the tables.

Plots are drawn on bare matplotlib Figures (Agg canvas, no pyplot state), so the report
works headless and from threads. Everything is written with atomic writes, so a report
on S3 or a shared disk is never seen half-written.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field

import pyarrow as pa

from persona_gen.bench import layout as L
from persona_gen.bench.config import ALL_MODES
from persona_gen.bench.layout import BenchLayout
from persona_gen.bench.metrics import (
    curve_table,
    loo_kappas,
    loo_table,
    mode_scores,
    pass_at_k_curve,
    scores_table,
)
from persona_gen.bench.run import scored_samples
from persona_gen.errors import UserError
from persona_gen.storage.objects import write_bytes_atomic

ACCURACY_PNG = "accuracy.png"
KAPPA_PNG = "loo_kappa.png"
CURVE_PNG = "pass_at_k.png"
REPORT_MD = "report.md"


@dataclass
class BenchReport:
    accuracy: pa.Table
    loo_kappa: pa.Table
    parse: list[dict] = field(default_factory=list)
    """Per model and mode: how the judged answer was found (marker / fallback / direct)."""
    errors: dict[str, int] = field(default_factory=dict)
    human: pa.Table | None = None
    human_personas: pa.Table | None = None
    """Kappa per role-player, variant and persona (human/persona_agreement)."""
    curve: pa.Table | None = None
    """pass@k for k = 1..k per model and mode (metrics.pass_at_k_curve)."""
    tokens: pa.Table | None = None
    """Tokens per model and mode (token_summary)."""
    intersections: pa.Table | None = None
    """Accuracy per population (bench.intersections), where bench run wrote it."""
    files: list[str] = field(default_factory=list)
    markdown: str = ""


def _fmt(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _mode_order(mode: str) -> int:
    return ALL_MODES.index(mode) if mode in ALL_MODES else len(ALL_MODES)  # type: ignore[arg-type]


def _parse_summary(answers: pa.Table) -> list[dict]:
    counts: dict[tuple[str, str], dict[str, int]] = {}
    for r in answers.select(["model", "mode", "answer_parse", "ablated_attribute"]).to_pylist():
        if r["ablated_attribute"] is not None or r["answer_parse"] is None:
            continue
        c = counts.setdefault((r["model"], r["mode"]), {"direct": 0, "marker": 0, "fallback": 0})
        c[r["answer_parse"]] = c.get(r["answer_parse"], 0) + 1
    return [{"model": m, "mode": mo, **c} for (m, mo), c in
            sorted(counts.items(), key=lambda kv: (kv[0][0], _mode_order(kv[0][1])))]


def _error_summary(answers: pa.Table, judgments: pa.Table) -> dict[str, int]:
    def failed(t: pa.Table, col: str) -> int:
        return 0 if col not in t.column_names else t.num_rows - t.column(col).null_count
    return {"samples": answers.num_rows, "answer_errors": failed(answers, "answer_error"),
            "judged": judgments.num_rows, "judge_errors": failed(judgments, "error")}


def _sum_by(table: pa.Table, keys: tuple[str, ...], columns: dict[str, str],
            distinct: str | None = None) -> dict[tuple, dict[str, int]]:
    out: dict[tuple, dict[str, int]] = {}
    seen: set[object] = set()
    names = [c for c in columns if c in table.column_names]
    present = [k for k in keys if k in table.column_names]
    for r in table.select([*present, *names, *([distinct] if distinct else [])]).to_pylist():
        if r.get("ablated_attribute") is not None:
            continue
        if distinct is not None:  # a per-request figure repeated on each of its samples
            if r[distinct] in seen:
                continue
            seen.add(r[distinct])
        acc = out.setdefault(tuple(r.get(k) for k in keys if k != "ablated_attribute"),
                             dict.fromkeys(columns.values(), 0))
        for c in names:
            acc[columns[c]] += int(r[c] or 0)
    return out


def token_summary(answers: pa.Table, judgments: pa.Table) -> pa.Table:
    """Per model and mode (full-persona rows): samples, answer prompt/output tokens (as the
    engine counted them, once per request of k samples), output tokens per sample, and the
    judge's prompt/output tokens."""
    keys = ("model", "mode", "ablated_attribute")
    ans = _sum_by(answers, keys, {"bench_answer_prompt_tokens": "answer_prompt_tokens",
                                  "bench_answer_output_tokens": "answer_output_tokens"},
                  distinct="request_id")
    jud = _sum_by(judgments, keys, {"bench_judge_prompt_tokens": "judge_prompt_tokens",
                                    "bench_judge_output_tokens": "judge_output_tokens"})
    samples = _sum_by(answers.append_column("one", pa.array([1] * answers.num_rows, pa.int64())),
                      keys, {"one": "samples"})
    rows = []
    for key in sorted(set(ans) | set(jud), key=lambda k: (k[0], _mode_order(k[1]))):
        n = samples.get(key, {}).get("samples", 0)
        a = ans.get(key, {"answer_prompt_tokens": 0, "answer_output_tokens": 0})
        j = jud.get(key, {"judge_prompt_tokens": 0, "judge_output_tokens": 0})
        rows.append({"model": key[0], "mode": key[1], "samples": n, **a,
                     "output_tokens_per_sample": a["answer_output_tokens"] / n if n else math.nan,
                     **j})
    schema = pa.schema([("model", pa.string()), ("mode", pa.string()), ("samples", pa.int64()),
                        ("answer_prompt_tokens", pa.int64()), ("answer_output_tokens", pa.int64()),
                        ("output_tokens_per_sample", pa.float64()),
                        ("judge_prompt_tokens", pa.int64()), ("judge_output_tokens", pa.int64())])
    return pa.Table.from_pylist(rows, schema=schema)


def curve_plot(curve: pa.Table) -> bytes:
    """pass@k against k, one line per model and mode."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = curve.to_pylist()
    fig = Figure(figsize=(6.5, 4.0), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for model, mode in sorted({(r["model"], r["mode"]) for r in rows},
                              key=lambda mm: (mm[0], _mode_order(mm[1]))):
        pts = sorted((r["k"], r["pass_at_k"]) for r in rows
                     if r["model"] == model and r["mode"] == mode)
        ax.plot([p[0] for p in pts], [_nan0(p[1]) for p in pts], marker="o", markersize=3,
                label=f"{model} / {mode}")
    ax.set_xlabel("k (samples per request)")
    ax.set_ylabel("pass@k (unbiased estimate)")
    ax.set_ylim(0, 1.05)
    ax.set_title("PERSONA Bench pass@k per model and mode")
    ax.legend(fontsize="x-small", loc="lower right")
    fig.tight_layout()
    return _png(fig)


def accuracy_plot(accuracy: pa.Table) -> bytes:
    """Grouped bars: accuracy per mode, one bar per model, bootstrap std as error bars."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = accuracy.to_pylist()
    models = sorted({r["model"] for r in rows})
    modes = sorted({r["mode"] for r in rows}, key=_mode_order)
    fig = Figure(figsize=(1.8 + 1.6 * len(modes), 3.8), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    width = 0.8 / max(len(models), 1)
    for i, model in enumerate(models):
        by_mode = {r["mode"]: r for r in rows if r["model"] == model}
        xs = [j + (i - (len(models) - 1) / 2) * width for j in range(len(modes))]
        ys = [_nan0(by_mode.get(m, {}).get("accuracy")) for m in modes]
        es = [_nan0(by_mode.get(m, {}).get("bootstrap_std")) for m in modes]
        ax.bar(xs, ys, width=width, yerr=es, capsize=3, label=model)
    ax.set_xticks(range(len(modes)), modes)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("accuracy (judge verdict = 1)")
    ax.set_title("PERSONA Bench accuracy per mode (error bars: bootstrap std)")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return _png(fig)


def kappa_plot(loo: pa.Table) -> bytes:
    """Horizontal bars: Cohen's kappa per left-out attribute (lower = matters more)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = loo.to_pylist()
    models = sorted({r["model"] for r in rows})
    mean_kappa: dict[str, list[float]] = {}
    for r in rows:
        mean_kappa.setdefault(r["attribute"], []).append(_nan0(r["kappa"]))
    attributes = sorted(mean_kappa, key=lambda a: sum(mean_kappa[a]) / len(mean_kappa[a]))
    fig = Figure(figsize=(6.5, max(2.6, 1.4 + 0.35 * len(attributes) * max(len(models), 1))),
                 dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    height = 0.8 / max(len(models), 1)
    for i, model in enumerate(models):
        by_attr = {r["attribute"]: r["kappa"] for r in rows if r["model"] == model}
        ys = [j + (i - (len(models) - 1) / 2) * height for j in range(len(attributes))]
        ax.barh(ys, [_nan0(by_attr.get(a)) for a in attributes], height=height, label=model)
    ax.set_yticks(range(len(attributes)), attributes)
    ax.set_xlim(min(0.0, *(_nan0(r["kappa"]) for r in rows)) - 0.05, 1.05)
    ax.axvline(0, color="grey", linewidth=0.8)
    ax.set_xlabel("Cohen's kappa, verdicts with vs without the attribute")
    ax.set_title("Leave-one-out: lower kappa = attribute matters more")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return _png(fig)


def _nan0(x: float | None) -> float:
    return 0.0 if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def _png(fig: object) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")  # type: ignore[attr-defined]
    return buf.getvalue()


def _markdown(rep: BenchReport) -> str:
    lines = ["# PERSONA Bench report", ""]
    if rep.errors:
        e = rep.errors
        lines += [f"Samples: {e['samples']} (answer errors: {e['answer_errors']}); judged: "
                  f"{e['judged']} (judge errors: {e['judge_errors']}).", ""]
    lines += ["## Accuracy per mode", "",
              "Share of sampled answers the role-playing judge found to need no revision for "
              "the persona; ± is the bootstrap standard deviation. `cut`: reasoning-mode "
              "samples cut at their token limit before the final-answer marker; they count as "
              "failures (score 0) in accuracy and pass@k. `failed`: engine or judge errors, "
              "left out.", "",
              "| model | mode | accuracy | ± std | pass@1 | pass@k | k | judged | cut | failed |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in _sorted_accuracy(rep.accuracy):
        lines.append(f"| {r['model']} | {r['mode']} | {_fmt(r['accuracy'])} | "
                     f"{_fmt(r['bootstrap_std'])} | {_fmt(r['pass_at_1'])} | "
                     f"{_fmt(r['pass_at_k'])} | {r['k']} | {r['judged']} | {_cut(r)} | "
                     f"{r['failed']} |")
    lines += ["", f"![accuracy per mode]({ACCURACY_PNG})", ""]
    if rep.curve is not None and rep.curve.num_rows:
        ks = sorted(set(rep.curve.column("k").to_pylist()))
        pairs = sorted({(r["model"], r["mode"]) for r in rep.curve.to_pylist()},
                       key=lambda mm: (mm[0], _mode_order(mm[1])))
        value = {(r["model"], r["mode"], r["k"]): r for r in rep.curve.to_pylist()}
        lines += ["## pass@k curve", "",
                  "Unbiased pass@k (1 - C(n-c,k)/C(n,k), averaged over requests with all k_max "
                  "samples scored; cut samples count as failures).", "",
                  "| model | mode | requests | " + " | ".join(f"k={k}" for k in ks) + " |",
                  "| --- | --- | --- | " + " | ".join("---" for _ in ks) + " |"]
        for m, mo in pairs:
            lines.append(f"| {m} | {mo} | {value[(m, mo, ks[0])]['requests']} | "
                         + " | ".join(_fmt(value[(m, mo, k)]["pass_at_k"]) for k in ks) + " |")
        lines += ["", f"![pass@k curve]({CURVE_PNG})", ""]
    if rep.tokens is not None and rep.tokens.num_rows:
        lines += ["## Tokens per mode", "",
                  "As the engines counted them (answers: once per request of k samples).", "",
                  "| model | mode | samples | answer prompt tok | answer output tok | "
                  "output tok / sample | judge prompt tok | judge output tok |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        lines += [f"| {r['model']} | {r['mode']} | {r['samples']} | {r['answer_prompt_tokens']} | "
                  f"{r['answer_output_tokens']} | {_fmt(r['output_tokens_per_sample'], 1)} | "
                  f"{r['judge_prompt_tokens']} | {r['judge_output_tokens']} |"
                  for r in rep.tokens.to_pylist()]
        lines.append("")
    if rep.intersections is not None and rep.intersections.num_rows:
        lines += ["## Intersectionality", "",
                  "Accuracy on each population of personas sharing the listed attribute values "
                  "(as the persona-bench package's study); gap: the population's accuracy minus "
                  "the accuracy over every persona with values for those attributes.", "",
                  "| model | mode | attributes | population | personas | samples | accuracy | "
                  "± std | gap |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        lines += [f"| {r['model']} | {r['mode']} | {r['attributes']} | {r['population']} | "
                  f"{r['personas']} | {r['samples']} | {_fmt(r['accuracy'])} | "
                  f"{_fmt(r['bootstrap_std'])} | {_fmt(r['gap'])} |"
                  for r in sorted(rep.intersections.to_pylist(), key=lambda r: (
                      r["model"], _mode_order(r["mode"]), r["attributes"], r["population"]))]
        lines.append("")
    if rep.parse:
        lines += ["### How the judged answer was found", "",
                  "`marker`: text after the final-answer marker; `fallback`: no usable marker, "
                  "the whole output was judged; `direct`: modes without a marker.", "",
                  "| model | mode | direct | marker | fallback |", "| --- | --- | --- | --- | --- |"]
        lines += [f"| {p['model']} | {p['mode']} | {p['direct']} | {p['marker']} | "
                  f"{p['fallback']} |" for p in rep.parse]
        lines.append("")
    if rep.loo_kappa.num_rows:
        lines += ["## Leave-one-attribute-out", "",
                  "Cohen's kappa between verdicts on answers written with and without each "
                  "attribute (same persona, question and sampling seed). Lower kappa: the "
                  "attribute changes more verdicts. `all_attributes`: every listed attribute "
                  "removed at once.", "", _loo_variant(rep.loo_kappa), "",
                  "| model | attribute | pairs | kappa | agreement | acc. full | acc. without |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for r in sorted(rep.loo_kappa.to_pylist(), key=lambda r: (r["model"], _nan0(r["kappa"]))):
            lines.append(f"| {r['model']} | {r['attribute']} | {r['pairs']} | {_fmt(r['kappa'])} | "
                         f"{_fmt(r['agreement'])} | {_fmt(r['accuracy_full'])} | "
                         f"{_fmt(r['accuracy_ablated'])} |")
        lines += ["", f"![kappa per attribute]({KAPPA_PNG})", ""]
    if rep.human is not None and rep.human.num_rows:
        lines += ["## Agreement with human raters", "",
                  "Cohen's kappa between the human majority vote and each role-playing model; "
                  "tied items have no majority and are left out.", "",
                  "| role-player | variant | items | ties excluded | kappa | agreement |",
                  "| --- | --- | --- | --- | --- | --- |"]
        lines += [f"| {r['roleplay_model']} | {r.get('roleplay_variant') or 'full'} | "
                  f"{r['items']} | {r['ties_excluded']} | {_fmt(r['kappa'])} | "
                  f"{_fmt(r['agreement'])} |" for r in rep.human.to_pylist()]
        lines.append("")
    if rep.human_personas is not None and rep.human_personas.num_rows:
        lines += ["### Kappa per persona", "",
                  "The distribution over personas of Cohen's kappa between the human majority "
                  "and the role-player (per persona, as the paper reports it).", "",
                  "| role-player | variant | personas | mean | median | 25% | 75% | min | max |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        lines += [f"| {d['model']} | {d['variant']} | {d['personas']} | {_fmt(d['mean'])} | "
                  f"{_fmt(d['median'])} | {_fmt(d['q25'])} | {_fmt(d['q75'])} | "
                  f"{_fmt(d['min'])} | {_fmt(d['max'])} |"
                  for d in kappa_distribution(rep.human_personas)]
        lines.append("")
    return "\n".join(lines)


def _loo_variant(loo: pa.Table) -> str:
    variants = (set(loo.column("judge_persona").to_pylist())
                if "judge_persona" in loo.column_names else {"full"})
    words = {"reduced": "the reduced persona (the model's, as the persona-bench package does)",
             "full": "the full persona (the real person; the model alone lost the attribute)"}
    return "Judge role-played " + "; ".join(words.get(v, v) for v in sorted(variants)) + "."


def kappa_distribution(per_persona: pa.Table) -> list[dict]:
    """Per role-player and variant: how per-persona kappas spread (NaN kappas left out)."""
    import numpy as np

    groups: dict[tuple[str, str], list[float]] = {}
    for r in per_persona.to_pylist():
        if r["kappa"] is not None and not math.isnan(r["kappa"]):
            groups.setdefault((r["roleplay_model"], r["roleplay_variant"]), []).append(r["kappa"])
    out = []
    for (model, variant), ks in sorted(groups.items()):
        q25, median, q75 = np.percentile(ks, [25, 50, 75])
        out.append({"model": model, "variant": variant, "personas": len(ks),
                    "mean": float(np.mean(ks)), "median": float(median), "q25": float(q25),
                    "q75": float(q75), "min": min(ks), "max": max(ks)})
    return out


def _cut(row: dict) -> str:
    # Metrics written before cut samples were scored have no count.
    return "n/a" if row.get("cut") is None else str(row["cut"])


def _sorted_accuracy(accuracy: pa.Table) -> list[dict]:
    return sorted(accuracy.to_pylist(), key=lambda r: (r["model"], _mode_order(r["mode"])))


def _metrics(bench: BenchLayout, answers: pa.Table | None,
             judgments: pa.Table | None) -> tuple[pa.Table, pa.Table]:
    accuracy, loo = bench.read(L.ACCURACY), bench.read(L.LOO_KAPPA)
    if accuracy is not None and loo is not None:
        return accuracy, loo
    if answers is None or judgments is None:
        raise UserError("no bench results: run `persona-gen bench run` first",
                        source=bench.base.uri)
    # Tables from a distributed run without the metrics step: compute with the defaults.
    scored = scored_samples(answers, judgments)
    k = int(max(answers.column("k").to_pylist(), default=1))
    # The LOO mode is the one the ablated rows were answered in.
    loo_modes = {m for m, a in zip(scored.column("mode").to_pylist(),
                                   scored.column("ablated_attribute").to_pylist(), strict=True) if a}
    loo = [row for m in sorted(loo_modes) for row in loo_kappas(scored, m)]
    return scores_table(mode_scores(scored, k, 1000, 0)), loo_table(loo)


def build_report(bench: BenchLayout) -> BenchReport:
    """Read the tables and compose the report (nothing written)."""
    answers, judgments = bench.read(L.ANSWERS), bench.read(L.JUDGMENTS)
    accuracy, loo = _metrics(bench, answers, judgments)
    rep = BenchReport(accuracy=accuracy, loo_kappa=loo, human=bench.read(L.HUMAN_AGREEMENT),
                      intersections=bench.read(L.INTERSECTIONALITY),
                      human_personas=bench.read(L.HUMAN_PERSONA_AGREEMENT))
    if answers is not None and judgments is not None:
        rep.parse = _parse_summary(answers)
        rep.errors = _error_summary(answers, judgments)
        k = int(max(answers.column("k").to_pylist(), default=1))
        rep.curve = curve_table(pass_at_k_curve(scored_samples(answers, judgments), k))
        rep.tokens = token_summary(answers, judgments)
    rep.markdown = _markdown(rep)
    return rep


def write_report(bench: BenchLayout) -> BenchReport:
    """Build the report and write report.md and the plots under bench/report/."""
    rep = build_report(bench)
    out = bench.report
    if rep.accuracy.num_rows:
        write_bytes_atomic(out.child(ACCURACY_PNG), accuracy_plot(rep.accuracy))
        rep.files.append(out.child(ACCURACY_PNG).uri)
    if rep.loo_kappa.num_rows:
        write_bytes_atomic(out.child(KAPPA_PNG), kappa_plot(rep.loo_kappa))
        rep.files.append(out.child(KAPPA_PNG).uri)
    if rep.curve is not None and rep.curve.num_rows:
        bench.write(L.PASS_AT_K_CURVE, rep.curve)
        write_bytes_atomic(out.child(CURVE_PNG), curve_plot(rep.curve))
        rep.files.append(out.child(CURVE_PNG).uri)
    if rep.tokens is not None:
        bench.write(L.TOKENS, rep.tokens)
    write_bytes_atomic(out.child(REPORT_MD), rep.markdown.encode("utf-8"))
    rep.files.append(out.child(REPORT_MD).uri)
    return rep


def rich_tables(rep: BenchReport) -> list[object]:
    """The accuracy (and LOO / human) tables for the terminal."""
    from rich import box
    from rich.table import Table

    ks = sorted({r["k"] for r in rep.accuracy.to_pylist()})
    # A light box and k in the title: the table fits an 80-column terminal.
    acc = Table(title=f"PERSONA Bench accuracy (pass@k at k={'/'.join(map(str, ks))}; cut: "
                      "scored as failures)", box=box.SIMPLE_HEAD, pad_edge=False,
                collapse_padding=True)
    for col in ("model", "mode", "acc.", "±std", "pass@1", "pass@k", "judged", "cut", "failed"):
        acc.add_column(col, justify="left" if col in ("model", "mode") else "right", no_wrap=True)
    for r in _sorted_accuracy(rep.accuracy):
        acc.add_row(r["model"], r["mode"], _fmt(r["accuracy"]), _fmt(r["bootstrap_std"]),
                    _fmt(r["pass_at_1"]), _fmt(r["pass_at_k"]), str(r["judged"]),
                    _cut(r), str(r["failed"]))
    out: list[object] = [acc]
    if rep.loo_kappa.num_rows:
        loo = Table(title="Leave-one-out: kappa per attribute (lower = matters more)",
                    caption=_loo_variant(rep.loo_kappa))
        for col in ("model", "attribute", "pairs", "kappa", "agreement"):
            loo.add_column(col, justify="left" if col in ("model", "attribute") else "right",
                           no_wrap=True)
        for r in sorted(rep.loo_kappa.to_pylist(), key=lambda r: (r["model"], _nan0(r["kappa"]))):
            loo.add_row(r["model"], r["attribute"], str(r["pairs"]), _fmt(r["kappa"]),
                        _fmt(r["agreement"]))
        out.append(loo)
    if rep.human is not None and rep.human.num_rows:
        out.append(human_table(rep.human))
    return out


def human_table(agreement: pa.Table) -> object:
    from rich.table import Table

    t = Table(title="Human majority vs role-playing models (Cohen's kappa)")
    for col in ("role-player", "variant", "items", "ties excluded", "kappa", "agreement"):
        t.add_column(col, justify="left" if col in ("role-player", "variant") else "right")
    for r in agreement.to_pylist():
        t.add_row(r["roleplay_model"], r.get("roleplay_variant") or "full", str(r["items"]),
                  str(r["ties_excluded"]), _fmt(r["kappa"]), _fmt(r["agreement"]))
    return t
