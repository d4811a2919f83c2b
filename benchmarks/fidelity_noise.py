"""Benchmark: is the fidelity flag calibrated? Draw n people with several seeds and count the
attribute x seed cells whose TVD lands above their 95th percentile of sampling noise.

    .venv/bin/python benchmarks/fidelity_noise.py [--source FILE ...] [--n 1586] [--seeds 5]

An unbiased draw should land above its 95th percentile in about 5% of cells (fewer where n
is a large share of the population: the band is that of a draw with replacement, and the
sampler draws without). Default source: the bundled NIST excerpt (data/census-excerpt/).
Prints a table of TVD / p95 per attribute and seed, then the count of cells above.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    from persona_gen.census.fidelity import fidelity_report
    from persona_gen.census.sample import sample_people

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", nargs="+",
                    default=[str(ROOT / "data" / "census-excerpt" / "national2019.csv.gz")])
    ap.add_argument("--n", type=int, default=1586)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--first-seed", type=int, default=1)
    args = ap.parse_args()

    started = time.perf_counter()
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    reports = [fidelity_report(args.source, sample_people(args.source, n=args.n, seed=s))
               for s in seeds]
    attrs = [a.attribute for a in reports[0].attributes]
    width = max(len(a) for a in attrs) + 2
    names = ", ".join(Path(s).name for s in args.source)
    print(f"Fidelity against sampling noise: n={args.n:,} from {names} "
          f"({reports[0].population.records:,} records), seeds {seeds[0]}-{seeds[-1]}")
    print(f"{'attribute':<{width}}" + "".join(f"{f'seed {s}':>17}" for s in seeds))
    above = total = 0
    single = []
    for i, attr in enumerate(attrs):
        cells = []
        for r in reports:
            a = r.attributes[i]
            over = a.noise_p95 is not None and a.tvd > a.noise_p95
            above += over
            cells.append(f"{a.tvd:.3f}/{a.noise_p95:.3f}{' *' if over else '  '}")
        # An attribute with one category in the population (state, in a one-state file)
        # has no noise and no distance: its cells cannot land above.
        if len(reports[0].attributes[i].categories) > 1:
            total += len(seeds)
        else:
            single.append(attr)
        print(f"{attr:<{width}}" + "".join(f"{c:>17}" for c in cells))
    print(f"cells above their 95th percentile (*): {above} of {total} "
          f"({above / total:.1%}; an unbiased draw: about 5%)"
          + (f"; not counted (one category): {', '.join(single)}" if single else "")
          + f"; {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
