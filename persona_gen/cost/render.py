"""Rich tables for a CostPlan: what `persona-gen cost` prints."""

from __future__ import annotations

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from persona_gen.cost.bench import BenchPlan
from persona_gen.cost.estimate import CostPlan


def tokens(n: float) -> str:
    if n >= 1e9:
        return f"{n / 1e9:.2f}B"
    if n >= 1e6:
        return f"{n / 1e6:.1f}M"
    if n >= 1e3:
        return f"{n / 1e3:.1f}k"
    return f"{n:.0f}"


def duration(hours: float) -> str:
    minutes = round(hours * 60)
    if minutes < 1 and hours > 0:
        return "<1m"
    if minutes < 60:
        return f"{minutes}m"
    if minutes < 48 * 60:
        return f"{minutes // 60}h {minutes % 60:02d}m"
    return f"{hours / 24:.1f}d"


def size(n: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:.0f} B"


def plan_tables(plan: CostPlan) -> Group:
    w = plan.workload
    drawn = ("census draws" if w.on_inconsistent == "drop" else "profile attempts")
    title = (f"Cost plan on {plan.cluster.label}: {w.personas:,} personas kept (of "
             f"{plan.persona_attempts:,} {drawn}) x {w.pairs_per_persona} prompts = "
             f"{w.pairs:,} pairs over {w.prompts:,} prompts\nmax_tokens "
             + "/".join(f"{k} {v}" for k, v in w.text_tokens.items()))
    t = Table(title=title, title_justify="left")
    # Reasoning tokens (stages with thinking on) get their own column, only when planned.
    thinks = plan.reasoning_tokens > 0
    for col, right in (("stage", False), ("model", False), ("calls", True),
                       ("prompt tok", True), ("cached", True), ("output tok", True),
                       *((("reasoning tok", True),) if thinks else ()),
                       ("GPUs/engine", True), ("engines", True), ("GPU-h", True),
                       ("wall", True), ("figure", False)):
        t.add_column(col, justify="right" if right else "left")
    for s in plan.stages:
        t.add_row(s.stage, s.model, f"{s.calls:,}", tokens(s.prompt_tokens),
                  tokens(s.cached_prompt_tokens), tokens(s.output_tokens),
                  *((tokens(s.reasoning_tokens),) if thinks else ()),
                  str(s.gpus_per_replica or "-"), str(s.replicas or "-"),
                  f"{s.gpu_hours:.2f}", duration(s.wall_hours), s.basis)
    t.add_section()
    t.add_row("total", "", f"{plan.calls:,}", tokens(plan.prompt_tokens), "",
              tokens(plan.output_tokens), *((tokens(plan.reasoning_tokens),) if thinks else ()),
              "", "", f"{plan.gpu_hours:.2f}", duration(plan.wall_hours), "")

    st = Table(title="Object storage (uncompressed)", title_justify="left")
    st.add_column("part")
    st.add_column("size", justify="right")
    for part, n in plan.storage.parts.items():
        st.add_row(part, size(n))
    st.add_section()
    st.add_row("run total", size(plan.storage.total_bytes))
    st.add_row("export (released columns)", size(plan.storage.export_bytes))

    tok = w.tokens
    note = Text(
        f"Billed: {plan.billed_gpu_hours:.2f} GPU-hours ({plan.cluster.count} GPUs x "
        f"{duration(plan.wall_hours)} wall). Outputs assumed to reach max_tokens; stages run "
        f"one after another; engine start-up and I/O not counted; storage is raw text, which "
        f"Parquet compresses. Assumptions: system "
        f"{tok.system_tokens}, persona {tok.persona_tokens}, prompt {tok.prompt_tokens} "
        f"tokens; inconsistency rate {tok.inconsistency_rate:.1%}; prefix cache "
        f"{'on' if tok.prefix_cache else 'off'}. Figures: persona_gen/cost/data/throughput.yaml.",
        style="dim",
    )
    notes = [Text(f"Note: {n}", style="yellow") for n in plan.notes]
    return Group(t, Text(""), st, Text(""), note, *notes)


def print_plan(plan: CostPlan, console: Console | None = None) -> None:
    (console or Console()).print(plan_tables(plan))


def bench_plan_tables(plan: BenchPlan) -> Group:
    """The bench plan: one line per model under test, mode and study (main / leave-one-out)."""
    where = plan.cluster.label if plan.cluster else "no GPU cluster"
    sized = ("sized from the config's splits" if plan.source == "config"
             else "counted in the request table")
    title = (f"PERSONA Bench cost plan on {where} ({sized}): k={plan.k} samples per request, "
             f"judge {plan.judge_model}")
    if plan.source == "config":
        title += (f"\n{plan.personas:,} personas x {plan.prompts_per_persona:,} prompts each "
                  f"(of {plan.prompts:,} selected)")
    t = Table(title=title, title_justify="left")
    for col, right in (("model", False), ("mode", False), ("study", False), ("requests", True),
                       ("samples", True), ("judge calls", True), ("answer tok in/out", True),
                       ("judge tok in/out", True), ("GPU-h", True), ("wall", True),
                       ("figure", False)):
        t.add_column(col, justify="right" if right else "left")
    for ln in plan.lines:
        a, j = ln.answer, ln.judge
        t.add_row(ln.model, ln.mode, ln.study, f"{ln.requests:,}", f"{ln.samples:,}",
                  f"{ln.judge_calls:,}",
                  f"{tokens(a.prompt_tokens - a.cached_prompt_tokens)}/{tokens(a.output_tokens)}",
                  f"{tokens(j.prompt_tokens - j.cached_prompt_tokens)}/{tokens(j.output_tokens)}",
                  f"{ln.gpu_hours:.2f}", duration(ln.wall_hours),
                  a.basis if a.basis == j.basis else f"{a.basis} / {j.basis}")
    t.add_section()
    t.add_row("total", "", "", f"{plan.requests:,}", f"{plan.samples:,}",
              f"{plan.judge_calls:,}", "", "", f"{plan.gpu_hours:.2f}",
              duration(plan.wall_hours), "")
    cap = ("no cap (bench.max_gpu_hours)" if plan.max_gpu_hours is None else
           f"cap bench.max_gpu_hours {plan.max_gpu_hours:g}"
           + (" EXCEEDED" if plan.over_budget else ""))
    note = Text(
        f"Total tokens: {tokens(plan.prompt_tokens)} prompt (before the prefix cache), "
        f"{tokens(plan.output_tokens)} output. Billed: {plan.billed_gpu_hours:.2f} GPU-hours; "
        f"{cap}. Token columns: computed prompt tokens (after the prefix cache) / output "
        "tokens. Every sample assumed to reach its mode's max_tokens and to be judged; lines "
        "run one after another; engine start-up and I/O not counted. Figures: "
        "persona_gen/cost/data/throughput.yaml.", style="dim")
    notes = [Text(f"Note: {n}", style="yellow") for n in plan.notes]
    return Group(t, Text(""), note, *notes)


def print_bench_plan(plan: BenchPlan, console: Console | None = None) -> None:
    (console or Console()).print(bench_plan_tables(plan))
