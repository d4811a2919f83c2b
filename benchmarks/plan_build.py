"""Bench: build the paper-scale plan (1,586 personas x 3,868 prompts -> 317,200 pairs).

Ids only, no model. Prints one table: seconds to build (best and median of --repeat runs),
seconds to write it as Parquet, rows, and whether the target (under 10 s) is met.

    .venv/bin/python bench/plan_build.py [--repeat 3] [--personas 1586] [--prompts 3868]
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from persona_gen.plan.assign import build_plan
from persona_gen.plan.config import PlanConfig
from persona_gen.plan.ids import synthetic_ids
from persona_gen.prompts.config import PromptsConfig
from persona_gen.storage import objects
from persona_gen.storage.uri import resolve

TARGET_S = 10.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--personas", type=int, default=1586)
    parser.add_argument("--prompts", type=int, default=3868)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    n_heldout = math.floor(args.prompts * PromptsConfig().heldout_fraction + 0.5)
    prompts = synthetic_ids("prompt", args.prompts)
    personas = synthetic_ids("persona", args.personas)
    train, heldout = prompts[: args.prompts - n_heldout], prompts[args.prompts - n_heldout:]

    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        plan = build_plan(personas, train, heldout, PlanConfig(), args.seed)
        times.append(time.perf_counter() - start)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        objects.write_table_atomic(resolve(Path(tmp) / "plan.parquet"), plan)
        write_s = time.perf_counter() - start

    table = Table(title=f"plan build: {args.personas:,} personas x {args.prompts:,} prompts "
                        f"({len(train):,} train / {len(heldout):,} held out)")
    for col in ("rows", "build s (best)", "build s (median)", "write s", "target", "met"):
        table.add_column(col, justify="right")
    best = min(times)
    table.add_row(f"{plan.num_rows:,}", f"{best:.2f}", f"{statistics.median(times):.2f}",
                  f"{write_s:.2f}", f"< {TARGET_S:.0f} s", "yes" if best < TARGET_S else "NO")
    Console().print(table)


if __name__ == "__main__":
    main()
