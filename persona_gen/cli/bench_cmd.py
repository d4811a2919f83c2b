"""`persona-gen bench ...`: run PERSONA Bench, report it, and run the human study."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from persona_gen.cli.options import (
    CheckJsonOpt,
    CheckOpt,
    ConfigOpt,
    OutputOpt,
    RunIdOpt,
    RunUriOpt,
    SetOpt,
    run_address,
    run_ref,
)

if TYPE_CHECKING:
    import pyarrow as pa

    from persona_gen.bench.layout import BenchLayout
    from persona_gen.run.config import RunConfig

app = typer.Typer(help="PERSONA Bench: answer modes, judge, metrics, human agreement.",
                  no_args_is_help=True)

def _bench_at(config: ConfigOpt, set_: SetOpt, output: str | None, run_id: str | None,
              run: str | None) -> tuple[BenchLayout, RunConfig]:
    from persona_gen.bench.layout import BenchLayout
    from persona_gen.run.config import load_config

    cfg = load_config(config, set_ or [])
    return BenchLayout.of(run_ref(cfg, output, run_id, run)), cfg


def _read_input(path: str | None, default_loc: object, what: str, cfg: RunConfig) -> pa.Table:
    from persona_gen.errors import UserError
    from persona_gen.storage import objects
    from persona_gen.storage.uri import Location, resolve

    loc = resolve(path, cfg.storage) if path else default_loc
    assert isinstance(loc, Location)
    if not objects.exists(loc):
        raise UserError(f"no {what} here; build them first or pass --{what} FILE", source=loc.uri)
    table = objects.read_table(loc)
    if table.num_rows == 0:
        raise UserError(f"no {what} rows (Parquet) found", source=loc.uri)
    return table


@app.command("run")
def run(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    output: OutputOpt = None,
    run_id: RunIdOpt = None,
    run: RunUriOpt = None,
    personas: Annotated[str | None, typer.Option(
        help="Personas Parquet (file or folder); default: the run's personas/.")] = None,
    prompts: Annotated[str | None, typer.Option(
        help="Prompts Parquet (file or folder); default: the run's prompts/.")] = None,
    in_process: Annotated[bool, typer.Option(
        "--in-process", help="Run engines in this process instead of on Ray (tiny runs).")] = False,
    yes: Annotated[bool, typer.Option(
        "--yes", help="Start even when the cost plan exceeds bench.max_gpu_hours.")] = False,
    model_sources: Annotated[list[str] | None, typer.Option(
        "--model", help="Bench this model instead of bench.models, no model file needed "
        "(repeatable): a local folder, an s3:// folder, a Hugging Face id, or a PEFT LoRA "
        "adapter folder (served on its base_model_name_or_path with vLLM's LoRA support). "
        "Its settings are inferred as `models add` infers them.")] = None,
    lora_base: Annotated[str | None, typer.Option(
        "--lora-base", help="Base model for a LoRA adapter given with --model (default: "
        "the adapter's base_model_name_or_path).")] = None,
    check: CheckOpt = False,
    json_: CheckJsonOpt = False,
) -> None:
    """Answer the run's prompts for its personas in every mode with every model, judge each
    sample, compute accuracy, pass@k and leave-one-out kappas; write bench/ and the report.
    Model calls run on the Ray Data pipeline with engine actors, committing blocks under
    bench/work/; re-running resumes: nothing already answered or judged is generated again.
    Before Ray starts it checks the models under test, the judge, engines, cluster, inputs
    and output, and reports every problem at once (--check: only that). It then prints the
    bench's cost plan (requests, samples, judge calls, tokens, GPU-hours, wall time per model
    and mode, on the GPUs of the `pipeline` section) to stderr, and refuses to start, exit
    code 65, when the plan needs more GPU-hours than `bench.max_gpu_hours`, unless --yes."""
    from persona_gen.bench.layout import ANSWERS, JUDGMENTS, BenchLayout
    from persona_gen.bench.report import rich_tables, write_report
    from persona_gen.bench.requests import build_requests
    from persona_gen.bench.run import engine_pool, run_bench, write_outputs
    from persona_gen.cli.run_cmd import print_checks
    from persona_gen.pipeline.stage import in_process as in_process_runner
    from persona_gen.run.bench import bench_stages
    from persona_gen.run.config import load_config
    from persona_gen.run.preflight import check_bench
    from persona_gen.run.recipe import PERSONAS, PROMPTS

    cfg = load_config(config, set_ or [])
    if model_sources:
        # Inferred model files, registered for this process (and the engine hosts it
        # starts, which get their specs from here); then they are the models under test.
        names = register_sources(model_sources, cfg, lora_base)
        cfg = load_config(config, [*(set_ or []), f"bench.models={json.dumps(names)}"])
    root, rid = run_address(cfg, output, run_id, run)
    # The checks first (models under test, judge, engines, cluster, inputs, output), before
    # Ray starts; --check stops after them.
    report = check_bench(cfg, root, rid, {
        "personas": personas or f"{root.rstrip('/')}/{rid}/{PERSONAS}",
        "prompts": prompts or f"{root.rstrip('/')}/{rid}/{PROMPTS}"})
    if json_ and not check:
        raise typer.BadParameter("--json goes with --check", param_hint="--json")
    if check:
        print_checks(report, json_)
        return
    if not report.ok:
        raise report.error()
    ref = run_ref(cfg, output, run_id, run)
    persona_table = _read_input(personas, ref.child(PERSONAS), "personas", cfg)
    prompt_table = _read_input(prompts, ref.child(PROMPTS), "prompts", cfg)
    requests = build_requests(persona_table, prompt_table, cfg.bench, cfg.run.seed)
    bench = BenchLayout.of(ref)
    console = Console()
    _plan_or_refuse(cfg, requests, yes)
    stages = bench_stages(cfg)
    console.print(f"bench: {requests.num_rows} requests x {cfg.bench.k} samples "
                  f"({len(cfg.bench.models)} model(s), judge {stages.judge.judge_model})")
    if in_process:
        with engine_pool() as engines:
            out = run_bench(requests, cfg.bench, stages, engines, cfg.run.seed,
                            done_answers=bench.read(ANSWERS), done_judgments=bench.read(JUDGMENTS),
                            runner=in_process_runner(cfg.pipeline.batch_size))
    else:
        from persona_gen.run.bench import run_bench_on_pipeline

        out = run_bench_on_pipeline(requests, cfg, stages, ref, bench.read(ANSWERS),
                                    bench.read(JUDGMENTS))
    write_outputs(bench, out)
    if cfg.bench.intersections:
        from persona_gen.bench.intersection import intersection_scores, intersection_table
        from persona_gen.bench.layout import INTERSECTIONALITY
        from persona_gen.bench.run import scored_samples

        bench.write(INTERSECTIONALITY, intersection_table(intersection_scores(
            scored_samples(out.answers, out.judgments), persona_table, cfg.bench.intersections,
            cfg.bench.intersection_min_personas, cfg.bench.bootstrap_samples, cfg.run.seed)))
    rep = write_report(bench)
    for table in rich_tables(rep):
        console.print(table)
    console.print(f"report: {rep.files[-1]}")


def register_sources(sources: list[str], cfg: RunConfig, lora_base: str | None = None,
                     folder: Path | None = None) -> list[str]:
    """Infer a model file for each source (as `models add` does; LoRA adapters on their
    base), write them into a fresh registry folder beside the user's models and point
    $PERSONA_GEN_MODELS_DIR at it; the names, in order."""
    import os
    import tempfile

    import yaml

    from persona_gen.config.loader import validate_model
    from persona_gen.cost.tables import load_table
    from persona_gen.engines.infer import infer_source
    from persona_gen.engines.registry import MODELS_DIR_ENV, ModelSpec, user_dir
    from persona_gen.hashing import hex_id

    table = load_table()
    gpu = cfg.pipeline.accelerator_type or "H100"
    gpu_name, _ = table.gpu(gpu)
    memory = {g: s.memory_gb for g, s in table.gpus.items()}
    target = folder or Path(tempfile.mkdtemp(prefix="persona-gen-bench-models-"))
    target.mkdir(parents=True, exist_ok=True)
    mine = user_dir()
    if mine is not None and mine.is_dir():  # the user's own models stay known
        for path in mine.iterdir():
            if path.suffix in (".yaml", ".yml") and path.is_file():
                (target / path.name).write_bytes(path.read_bytes())
    names = []
    for source in sources:
        inferred = infer_source(source, memory, target_gpu=gpu_name, s3=cfg.storage,
                                base=lora_base)
        # Named after the source, with a short hash of it: never the name of a shipped
        # model, and the same source gets the same name (and request ids) on every run.
        name = f"{inferred.spec['name']}-{hex_id('source', source, lora_base, size=6)}"
        spec = {**inferred.spec, "name": name}
        path = target / f"{name}.yaml"
        validate_model(ModelSpec, spec, f"--model {source}").check(f"--model {source}")
        path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
        Console(stderr=True).print(f"--model {source}: {name} ("
                                   + "; ".join(f"{k}: {v}" for k, v in inferred.found) + ")")
        names.append(name)
    os.environ[MODELS_DIR_ENV] = str(target)
    return names


def _plan_or_refuse(cfg: RunConfig, requests: pa.Table, yes: bool) -> None:
    """Print the bench's cost plan to stderr; refuse (UserError, exit 65) over the cap."""
    from persona_gen.cli.cost_cmd import planning_table, registry_engines
    from persona_gen.cost.bench import counts_from_requests, pipeline_cluster, plan_bench
    from persona_gen.cost.render import print_bench_plan
    from persona_gen.errors import UserError

    cap = cfg.bench.max_gpu_hours
    try:
        table = planning_table()
        plan = plan_bench(cfg, counts_from_requests(requests), pipeline_cluster(cfg, table),
                          table, registry_engines(), source="requests")
    except UserError as exc:
        # No plan (a model the throughput table lacks on this GPU): a cap cannot be checked.
        if cap is not None and not yes:
            raise UserError(f"cannot check the cap of {cap:g} GPU-hours: no cost plan ({exc}); "
                            "pass --yes to start anyway", source="bench.max_gpu_hours") from None
        Console(stderr=True).print(f"bench: no cost plan ({exc})")
        return
    print_bench_plan(plan, Console(stderr=True, width=180))
    if plan.over_budget and not yes:
        raise UserError(f"the bench plans {plan.gpu_hours:,.1f} GPU-hours, over the cap of "
                        f"{cap:g}; shrink it (bench.prompts_per_persona, k, models, modes), "
                        "raise the cap, or pass --yes", source="bench.max_gpu_hours")


@app.command("report")
def report(run: RunUriOpt = None, output: OutputOpt = None, run_id: RunIdOpt = None,
           config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """Write bench/report/report.md with plots (accuracy per mode, kappa per attribute)
    from the run's bench/ tables, and print the tables."""
    from persona_gen.bench.report import rich_tables, write_report

    bench, _ = _bench_at(config, set_, output, run_id, run)
    rep = write_report(bench)
    console = Console()
    for table in rich_tables(rep):
        console.print(table)
    for f in rep.files:
        console.print(f"wrote {f}")


@app.command("export-sheets")
def export_sheets(
    model: Annotated[str | None, typer.Option(
        help="Model under test whose answers are compared (--source modes).")] = None,
    source: Annotated[str | None, typer.Option(
        help="pairs: the run's original answer against its revision for the persona (the "
             "paper's comparison; default); modes: two bench modes of --model (default when "
             "--model is given).")] = None,
    mode_a: Annotated[str, typer.Option(help="First answer source (bench mode).")] = "baseline",
    mode_b: Annotated[str, typer.Option(help="Second answer source (bench mode).")] = "summary",
    personas: Annotated[int, typer.Option(min=1, help="Personas on the sheet (paper: 20).")] = 20,
    questions: Annotated[int, typer.Option(min=1, help="Questions per persona (paper: 10).")] = 10,
    items: Annotated[str | None, typer.Option(
        help="Use this items Parquet instead (item_id, persona_id, persona_text, question, "
             "answer_a, answer_b).")] = None,
    out: Annotated[Path | None, typer.Option(
        help="Also copy sheets.csv and sheets.html into this local folder.")] = None,
    seed: int = 0,
    run: RunUriOpt = None,
    output: OutputOpt = None,
    run_id: RunIdOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Write rating sheets (CSV and a self-contained HTML page) for human raters: by default
    items of the run's own pairs (original against revision), or two bench modes of a model."""
    from persona_gen.bench.human import (
        build_items,
        build_pair_items,
        check_items,
        sheet_csv,
        sheet_html,
    )
    from persona_gen.bench.layout import ANSWERS, HUMAN_ITEMS
    from persona_gen.errors import UserError
    from persona_gen.storage import objects
    from persona_gen.storage.uri import resolve

    bench, cfg = _bench_at(config, set_, output, run_id, run)
    kind = source or ("modes" if model else "pairs")
    if kind not in ("pairs", "modes"):
        raise UserError(f"'{kind}': expected pairs or modes", source="--source")
    if items:
        table = check_items(objects.read_table(resolve(items, cfg.storage)), items)
    elif kind == "pairs":
        from persona_gen.run.recipe import stage as recipe_stage

        pairs_loc = run_ref(cfg, output, run_id, run).child(recipe_stage("revision").writes)
        if not objects.exists(pairs_loc):
            raise UserError("no pairs in this run (feedback/pairs); run `persona-gen run` first, or "
                            "pass --source modes --model NAME", source=pairs_loc.uri)
        table = build_pair_items(objects.read_table(pairs_loc), personas, questions, seed)
    else:
        if model is None:
            raise UserError("--source modes needs --model", source="--model")
        answers = bench.read(ANSWERS)
        if answers is None:
            raise UserError("no bench answers: run `persona-gen bench run` first", source=bench.base.uri)
        table = build_items(answers, model, mode_a, mode_b, personas, questions, seed)
    files = {"sheets.csv": sheet_csv(table), "sheets.html": sheet_html(table).encode("utf-8")}
    bench.write(HUMAN_ITEMS, table)
    for name, data in files.items():
        objects.write_bytes_atomic(bench.sheets.child(name), data)
        if out:
            out.mkdir(parents=True, exist_ok=True)
            (out / name).write_bytes(data)
    n_personas = len(set(table.column("persona_id").to_pylist()))
    typer.echo(f"{table.num_rows} items for {n_personas} personas -> {bench.sheets.uri}"
               + (f" and {out}" if out else ""))


@app.command("roleplay")
def roleplay(
    models: Annotated[list[str], typer.Option(
        "--model", help="Role-playing model (repeatable).")],
    variants: Annotated[list[str] | None, typer.Option(
        "--variant", help="full (the letter alone), summary (the persona's relevant facts "
        "first) or cot (reasoning first); repeatable; default: all three.")] = None,
    run: RunUriOpt = None,
    output: OutputOpt = None,
    run_id: RunIdOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Let each model role-play the personas and choose A or B on the exported sheet items,
    in each role-play variant (full persona, summary, cot)."""
    from dataclasses import replace

    import pyarrow as pa

    from persona_gen.bench.layout import HUMAN_ITEMS, ROLEPLAY
    from persona_gen.bench.run import engine_pool
    from persona_gen.errors import UserError
    from persona_gen.pipeline.stage import run_in_process
    from persona_gen.run.recipe import build

    bench, cfg = _bench_at(config, set_, output, run_id, run)
    items = bench.read(HUMAN_ITEMS)
    if items is None:
        raise UserError("no sheet items: run `persona-gen bench export-sheets` first",
                        source=bench.base.uri)
    from persona_gen.bench.roleplay import REASONING_MAX_TOKENS, VARIANTS

    chosen = variants or list(VARIANTS)
    bad = [v for v in chosen if v not in VARIANTS]
    if bad:
        raise UserError(f"{bad}: expected {list(VARIANTS)}", source="--variant")
    parts = []
    with engine_pool() as engines:
        for m in models:
            for variant in chosen:
                stage = replace(build(cfg, "bench_roleplay"), model=m, variant=variant)
                if variant != "full":  # notes before the letter need room
                    limit = max(stage.sampling.max_tokens or 0, REASONING_MAX_TOKENS)
                    stage = replace(stage, sampling=stage.sampling.model_copy(
                        update={"max_tokens": limit}))
                parts.append(run_in_process(stage, engines(m), items,
                                            batch_size=cfg.pipeline.batch_size))
    bench.write(ROLEPLAY, pa.concat_tables(parts, promote_options="default"))
    typer.echo(f"{items.num_rows} items x {len(models)} role-player(s) x {len(chosen)} "
               f"variant(s) -> {bench.file(ROLEPLAY).uri}")


@app.command("import-sheets")
def import_sheets(
    sheets: Annotated[list[Path], typer.Argument(help="Filled sheets (CSV, or the page's JSON).")],
    run: RunUriOpt = None,
    output: OutputOpt = None,
    run_id: RunIdOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Read raters' filled sheets, take the majority per item (ties: no majority) and print
    Cohen's kappa between the majority and each role-playing model."""
    from persona_gen.bench.human import agreement, majority_vote, ratings_table
    from persona_gen.bench.layout import (
        HUMAN_AGREEMENT,
        HUMAN_ITEMS,
        HUMAN_MAJORITY,
        HUMAN_RATINGS,
        ROLEPLAY,
    )
    from persona_gen.bench.report import human_table

    bench, _ = _bench_at(config, set_, output, run_id, run)
    items = bench.read(HUMAN_ITEMS)
    known = set(items.column("item_id").to_pylist()) if items is not None else None
    ratings = ratings_table(sheets, known)
    majority = majority_vote(ratings)
    bench.write(HUMAN_RATINGS, ratings)
    bench.write(HUMAN_MAJORITY, majority)
    raters = len(set(ratings.column("rater").to_pylist()))
    ties = sum(majority.column("tie").to_pylist())
    typer.echo(f"{ratings.num_rows} ratings from {raters} raters on {majority.num_rows} items "
               f"({ties} tied, no majority)")
    roleplay_table = bench.read(ROLEPLAY)
    if roleplay_table is None:
        typer.echo("no role-player choices yet: run `persona-gen bench roleplay` for kappas")
        return
    agree = agreement(majority, roleplay_table)
    bench.write(HUMAN_AGREEMENT, agree)
    if items is not None:
        from persona_gen.bench.human import persona_agreement
        from persona_gen.bench.layout import HUMAN_PERSONA_AGREEMENT

        bench.write(HUMAN_PERSONA_AGREEMENT, persona_agreement(majority, roleplay_table, items))
    Console().print(human_table(agree))


@app.command("compare")
def compare(
    run_a: Annotated[str, typer.Argument(help="Run A (e.g. the base model's bench run): <root>/<run_id>.")],
    run_b: Annotated[str, typer.Argument(help="Run B (e.g. the trained model's): <root>/<run_id>.")],
    model_a: Annotated[str | None, typer.Option(
        help="Model under test in run A (default: its only one).")] = None,
    model_b: Annotated[str | None, typer.Option(
        help="Model under test in run B (default: its only one).")] = None,
    samples: Annotated[int, typer.Option(min=10, help="Bootstrap resamples.")] = 1000,
    seed: int = 0,
    out: Annotated[str | None, typer.Option(
        help="Folder (local or s3://) for compare.md, compare.png and the tables; default: "
             "RUN_B/bench/compare.")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Compare two bench runs: accuracy per mode and leave-one-out kappa per attribute,
    B - A, with seeded bootstrap 95% intervals (paired where both runs scored the same items).
    Prints the table; writes compare.md, compare.png and Parquet tables."""
    from persona_gen.bench import compare as C
    from persona_gen.bench.layout import ANSWERS, JUDGMENTS, BenchLayout
    from persona_gen.bench.run import scored_samples
    from persona_gen.errors import UserError
    from persona_gen.run.config import load_config
    from persona_gen.storage.objects import write_bytes_atomic, write_table_atomic
    from persona_gen.storage.runref import RunRef
    from persona_gen.storage.uri import resolve

    cfg = load_config(config, set_ or [])

    def scored(uri: str, model: str | None, flag: str) -> tuple[pa.Table, str]:
        bench = BenchLayout.of(RunRef.parse(uri, cfg.storage))
        answers, judgments = bench.read(ANSWERS), bench.read(JUDGMENTS)
        if answers is None or judgments is None:
            raise UserError("no bench answers and judgments here: run `persona-gen bench run` "
                            "first", source=uri)
        table = scored_samples(answers, judgments)
        models = sorted(set(table.column("model").to_pylist()))
        if model is None:
            if len(models) != 1:
                raise UserError(f"the run benched {models}; choose one with {flag}", source=uri)
            model = models[0]
        elif model not in models:
            raise UserError(f"model '{model}' is not in this run (it has {models})", source=flag)
        return table, model

    a, ma = scored(run_a, model_a, "--model-a")
    b, mb = scored(run_b, model_b, "--model-b")
    modes = C.mode_diffs(a, b, ma, mb, samples, seed)
    if not modes:
        raise UserError("the two runs share no mode", source=run_b)
    attributes = C.attribute_diffs(a, b, ma, mb, samples, seed)
    folder = resolve(out, cfg.storage) if out else BenchLayout.of(
        RunRef.parse(run_b, cfg.storage)).base.child("compare")
    write_table_atomic(folder.child("modes.parquet"), C.mode_diff_table(modes))
    write_table_atomic(folder.child("attributes.parquet"), C.attribute_diff_table(attributes))
    write_bytes_atomic(folder.child("compare.png"), C.compare_plot(modes, attributes))
    write_bytes_atomic(folder.child("compare.md"),
                       C.compare_markdown(modes, attributes, run_a, run_b, "compare.png").encode())
    Console().print(_compare_table(modes, attributes))
    Console(stderr=True).print(f"wrote {folder.child('compare.md').uri}")


def _compare_table(modes: list, attributes: list) -> object:
    from rich import box
    from rich.console import Group
    from rich.table import Table

    def f(x: float) -> str:
        return "n/a" if x != x else f"{x:+.3f}"

    t = Table(title=f"B - A: {modes[0].model_b} vs {modes[0].model_a} (95% bootstrap interval)",
              box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("mode", "acc. A", "acc. B", "B - A", "interval", "paired"):
        t.add_column(col, justify="left" if col == "mode" else "right", no_wrap=True)
    for m in modes:
        t.add_row(m.mode, f"{m.accuracy_a:.3f}", f"{m.accuracy_b:.3f}", f(m.diff),
                  f"[{f(m.ci_low)}, {f(m.ci_high)}]", str(m.paired))
    parts: list[object] = [t]
    if attributes:
        k = Table(title="Leave-one-out kappa per attribute, B - A", box=box.SIMPLE_HEAD,
                  pad_edge=False)
        for col in ("attribute", "kappa A", "kappa B", "B - A", "interval"):
            k.add_column(col, justify="left" if col == "attribute" else "right", no_wrap=True)
        for a in attributes:
            k.add_row(a.attribute, f"{a.kappa_a:.3f}", f"{a.kappa_b:.3f}", f(a.diff),
                      f"[{f(a.ci_low)}, {f(a.ci_high)}]")
        parts.append(k)
    return Group(*parts)
