"""`persona-gen census download | sample | fidelity`"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from persona_gen.cli.conventions import JsonOpt, echo_json
from persona_gen.cli.options import ConfigOpt, SetOpt
from persona_gen.errors import DataError
from persona_gen.run.config import load_config

app = typer.Typer(help="ACS PUMS census microdata: download, sample people, check fidelity.",
                  no_args_is_help=True)

SourceOpt = Annotated[
    list[str] | None,
    typer.Option("--source", "-s", help="psam_p*.csv, csv_p??.zip, a folder of them, or a NIST "
                 "excerpt CSV (repeatable; default: census.sources from the config)."),
]
LayoutOpt = Annotated[
    str | None, typer.Option("--layout", help="auto (from the header), pums or nist.")
]
StatesOpt = Annotated[
    str | None, typer.Option("--states", help="Two-letter state codes to keep, e.g. WY,VT.")
]


def _split(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [s.strip() for s in text.split(",") if s.strip()]


@app.command("sample")
def sample_cmd(
    source: SourceOpt = None,
    layout: LayoutOpt = None,
    n: Annotated[int | None, typer.Option("--n", help="People to draw (default: personas.n, 1586).")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed (default: run.seed).")] = None,
    out: Annotated[str | None, typer.Option("--to", "--out",
                                            help="Parquet file: a path or s3://, gs://, az://bucket/key.")] = None,
    states: StatesOpt = None,
    min_age: Annotated[int | None, typer.Option("--min-age", help="Youngest age kept (18).")] = None,
    max_age: Annotated[int | None, typer.Option("--max-age", help="Oldest age kept.")] = None,
    all_ages: Annotated[bool, typer.Option("--all-ages", help="Keep children too.")] = False,
    stratify: Annotated[str | None, typer.Option(
        "--stratify", help="Attributes to stratify on, e.g. state,sex or age.")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Draw people proportional to their census weight and write them as Parquet."""
    from persona_gen.census.sample import read_metadata, sample_people
    from persona_gen.storage import objects, resolve

    cfg = load_config(config, set_ or [])
    c = cfg.census
    if not out:
        raise DataError("say where to write the sample, e.g. --to out/personas.parquet",
                        source="--to")
    table = sample_people(
        source or c.sources,
        n=n if n is not None else cfg.personas.n,
        seed=seed if seed is not None else (c.seed if c.seed is not None else cfg.run.seed),
        layout=layout or c.layout,
        states=_split(states) if states is not None else c.states,
        min_age=None if all_ages else (min_age if min_age is not None else c.min_age),
        max_age=max_age if max_age is not None else c.max_age,
        stratify=_split(stratify) if stratify is not None else c.stratify,
        block_bytes=c.block_mb << 20,
        s3=cfg.storage,
    )
    loc = resolve(out, cfg.storage)
    objects.write_table_atomic(loc, table)
    meta = read_metadata(table.schema)
    if json_:
        echo_json({"uri": loc.uri, "people": table.num_rows, "layout": meta.layout,
                   "seed": meta.seed, "population_records": meta.population.records,
                   "missing_attributes": list(meta.missing_attributes)})
        return
    typer.echo(f"wrote {table.num_rows:,} people to {loc.uri} (layout {meta.layout}, seed "
               f"{meta.seed}, population {meta.population.records:,} records)")
    if meta.missing_attributes:
        typer.echo("not in this layout (left empty): " + ", ".join(meta.missing_attributes))


@app.command("fidelity")
def fidelity_cmd(
    sample: Annotated[str, typer.Option("--sample", help="A sample written by `census sample`.")],
    source: SourceOpt = None,
    layout: LayoutOpt = None,
    out: Annotated[str | None, typer.Option(
        "--to", "--out", help="Folder for fidelity.json and the PNG charts (default: the "
        "sample's folder).")] = None,
    threshold: Annotated[float | None, typer.Option(
        "--threshold", help="Flag attributes whose TVD is above this fixed cap instead of "
        "those above the 95th percentile of sampling noise (default: the noise band; "
        "census.fidelity.threshold).")] = None,
    fail_on_flag: Annotated[bool, typer.Option(
        "--fail-on-flag", help="Exit 1 when any attribute is flagged.")] = False,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Total-variation distance between the sample and the weighted population, per attribute."""
    from persona_gen.census.charts import distributions_chart, tvd_chart
    from persona_gen.census.fidelity import fidelity_report
    from persona_gen.storage import objects, resolve

    cfg = load_config(config, set_ or [])
    c = cfg.census
    sample_loc = resolve(sample, cfg.storage)
    if not objects.exists(sample_loc):
        raise DataError("sample not found", source=sample_loc.uri)
    table = objects.read_table(sample_loc)
    report = fidelity_report(
        source or c.sources, table, sample_name=sample_loc.uri,
        threshold=threshold if threshold is not None else c.fidelity.threshold,
        noise_draws=c.fidelity.noise_draws, layout=layout, block_bytes=c.block_mb << 20, s3=cfg.storage,
    )
    dest = resolve(out, cfg.storage) if out else resolve(
        sample_loc.uri.rsplit("/", 1)[0] if "/" in sample_loc.uri else ".", cfg.storage)
    objects.write_bytes_atomic(
        dest.child("fidelity.json"),
        json.dumps(report.model_dump(mode="json"), indent=2).encode())
    objects.write_bytes_atomic(dest.child("fidelity_tvd.png"), tvd_chart(report))
    objects.write_bytes_atomic(dest.child("fidelity_distributions.png"),
                               distributions_chart(report))
    for line in report.table_lines():
        typer.echo(line)
    typer.echo(f"population: {report.population.records:,} records, weight "
               f"{report.population.weight:,}; sample n={report.n}")
    reasons: dict[str, list[str]] = {}
    for attr, why in report.not_compared.items():
        reasons.setdefault(why, []).append(attr)
    for why, attrs in reasons.items():
        typer.echo(f"not compared ({why}): {', '.join(attrs)}")
    typer.echo(f"flagged: {report.rule}")
    if report.flagged:
        typer.echo(f"FLAGGED: {', '.join(report.flagged)}")
    else:
        typer.echo("no attribute flagged")
    typer.echo(f"wrote {dest.child('fidelity.json').uri} and 2 charts")
    if report.flagged and fail_on_flag:
        raise typer.Exit(1)


@app.command("download")
def download_cmd(
    year: Annotated[int | None, typer.Option("--year", help="Survey year, e.g. 2023.")] = None,
    period: Annotated[str | None, typer.Option("--period", help="1-Year or 5-Year.")] = None,
    states: StatesOpt = None,
    dest: Annotated[Path | None, typer.Option(
        "--dest", help="Folder; files land in DEST/YEAR/PERIOD/csv_p{st}.zip.")] = None,
    to: Annotated[str | None, typer.Option(
        "--to", help="Then copy them to this path or URI (s3://, gs://, az://bucket/inputs/census), at "
        "TO/YEAR/PERIOD/csv_p{st}.zip; DEST is the resumable staging folder.")] = None,
    base_url: Annotated[str | None, typer.Option(
        "--base-url", help="Mirror of the Bureau's PUMS folder (env PERSONA_GEN_PUMS_BASE_URL).",
    )] = None,
    # --no-progress like `run`; --quiet and -q stay as aliases.
    quiet: Annotated[bool, typer.Option("--no-progress", "--quiet", "-q",
                                        help="No progress bar.")] = False,
    housing: Annotated[bool, typer.Option(
        "--housing/--no-housing",
        help="Also fetch the housing archives (csv_h{st}.zip): household type, language "
        "and children come from them.")] = True,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Fetch the Bureau's person archives (resumable; checked against the announced size)."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TransferSpeedColumn,
    )

    from persona_gen.census.download import download, publish

    cfg = load_config(config, set_ or [])
    d = cfg.census.download
    staging = dest if dest is not None else Path(d.dest)
    target = to if to is not None else d.to
    if target is not None:
        from persona_gen.storage import resolve

        resolve(target, cfg.storage)  # a bad URI fails now, not after the download
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), disable=quiet, transient=False) as bar:
        tasks: dict[str, int] = {}

        def progress(name: str, done: int, total: int | None) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(name, total=total)
            bar.update(tasks[name], completed=done, total=total)

        results = download(
            year if year is not None else d.year,
            period or d.period,
            _split(states) if states is not None else (d.states or cfg.census.states),
            staging,
            base=base_url or d.base_url,
            progress=progress,
            housing=housing,
        )
    for r in results:
        how = ("already there" if r.skipped else
               f"resumed at {r.resumed_from:,} bytes" if r.resumed_from else "downloaded")
        typer.echo(f"{r.path} ({r.size:,} bytes, {how})")
    if target is not None:
        for p in publish(results, staging, target, cfg.storage):
            typer.echo(f"{p.uri} ({p.size:,} bytes, {'already there' if p.skipped else 'copied'})")
