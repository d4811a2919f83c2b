"""Benchmark: sample 1,586 people from a 3-million-row official-layout PUMS person file.

    .venv/bin/python bench/census_sampling.py [--rows 3000000] [--n 1586] [--workdir DIR]
                                              [--zip] [--fidelity] [--block-mb 2]

Generates (once, cached in --workdir) a psam_p06.csv in the Bureau's exact 2019 person
layout: every column of the header, the mapped variables and the 80 replicate weights
filled with plausible codes, the rest blank as in real files. Each measurement runs in a
fresh Python process, so its peak resident memory (ru_maxrss) is its own. Prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHUNK = 250_000


def generate(path: Path, rows: int, seed: int = 0) -> None:
    """Write `rows` synthetic people in the official layout, chunk by chunk."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from persona_gen.census import codebook

    header = codebook.pums_person_columns(2019)
    rng = np.random.default_rng(seed)
    book = codebook.load()["pums"]["2019"]

    def codes(var: str, n: int, width: int) -> pa.Array:
        keys = np.array(sorted(book[var], key=int))
        return pa.array(np.char.zfill(rng.choice(keys, n), width))

    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as out:
        # The Bureau's header is bare names; pyarrow would quote them.
        out.write((",".join(header) + "\n").encode())
        opts = pacsv.WriteOptions(include_header=False, quoting_style="none")
        for start in range(0, rows, CHUNK):
            n = min(CHUNK, rows - start)
            ids = np.arange(start, start + n)
            age = rng.integers(0, 96, n)
            adult = age >= 16
            weight = rng.gamma(2.0, 50.0, n).astype(np.int64) + 1
            cols: dict[str, pa.Array] = {
                "RT": pa.array(np.full(n, "P")),
                "SERIALNO": pa.array([f"2019HU{i // 2:07d}" for i in ids]),
                "DIVISION": pa.array(np.full(n, "9")),
                "SPORDER": pa.array(np.char.zfill((ids % 2 + 1).astype(str), 2)),
                "PUMA": pa.array(np.char.zfill(rng.integers(100, 11300, n).astype(str), 5)),
                "REGION": pa.array(np.full(n, "4")),
                "ST": pa.array(np.full(n, "06")),
                "ADJINC": pa.array(np.full(n, "1010145")),
                "PWGTP": pa.array(weight),
                "AGEP": pa.array(age),
                "PINCP": pa.array(np.where(adult, rng.lognormal(10.3, 1.1, n).astype(np.int64),
                                           0), mask=~adult),
            }
            for var, width in (("SEX", 1), ("RAC1P", 1), ("HISP", 2), ("ANC1P", 3),
                               ("LANX", 1), ("LANP", 4), ("SCHL", 2), ("ESR", 1), ("COW", 1),
                               ("INDP", 4), ("OCCP", 4), ("MSP", 1), ("PAOC", 1),
                               ("POBP", 3), ("CIT", 1), ("MIL", 1), ("DIS", 1), ("HICOV", 1),
                               ("DREM", 1), ("DEYE", 1), ("DEAR", 1), ("ENG", 1), ("FER", 1)):
                cols[var] = codes(var, n, width)
            for k in range(1, 81):
                cols[f"PWGTP{k}"] = pa.array((weight * rng.uniform(0.5, 1.5, n)).astype(np.int64))
            table = pa.table({c: cols.get(c, pa.nulls(n, pa.string())) for c in header})
            pacsv.write_csv(table, out, write_options=opts)
    tmp.replace(path)


def peak_rss_mib() -> float:
    """This process's peak resident memory. VmHWM is per address space, so unlike
    ru_maxrss it does not inherit the parent's peak across fork + exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(kind: str, source: str, n: int, seed: int, block_mb: int) -> dict:
    """Run one measurement in this process (called in a child) and return its numbers."""
    import pyarrow as pa

    from persona_gen.census.fidelity import fidelity_report
    from persona_gen.census.sample import sample_people

    base_rss = peak_rss_mib()
    t0 = time.perf_counter()
    table = sample_people([source], n=n, seed=seed, block_bytes=block_mb << 20)
    seconds = time.perf_counter() - t0
    if kind == "fidelity":
        t0 = time.perf_counter()
        fidelity_report([source], table, block_bytes=block_mb << 20)
        seconds = time.perf_counter() - t0
    return {"seconds": seconds, "peak_rss_mb": peak_rss_mib(), "import_rss_mb": base_rss,
            "arrow_peak_mb": pa.default_memory_pool().max_memory() / 2**20,
            "rows_out": table.num_rows}


def child(kind: str, source: Path, n: int, seed: int, block_mb: int) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--source", str(source), "--n", str(n),
           "--seed", str(seed), "--block-mb", str(block_mb)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode:
        raise SystemExit(f"{kind} failed:\n{res.stderr}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=3_000_000)
    ap.add_argument("--n", type=int, default=1586)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--block-mb", type=int, default=2)
    ap.add_argument("--workdir", type=Path,
                    default=Path(os.environ.get("TMPDIR", "/tmp")) / "persona-gen-bench")
    ap.add_argument("--zip", action="store_true", help="also time the same file zipped")
    ap.add_argument("--fidelity", action="store_true", help="also time a fidelity pass")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--source", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.source, args.n, args.seed, args.block_mb)))
        return

    args.workdir.mkdir(parents=True, exist_ok=True)
    src = args.workdir / f"psam_p06_{args.rows}.csv"
    if not src.exists():
        t0 = time.perf_counter()
        generate(src, args.rows)
        print(f"generated {src} in {time.perf_counter() - t0:.1f} s")
    runs = [("sample", "csv", src)]
    if args.zip:
        zsrc = args.workdir / f"csv_pca_{args.rows}.zip"
        if not zsrc.exists():
            with zipfile.ZipFile(zsrc, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
                z.write(src, "psam_p06.csv")
        runs.append(("sample", "zip", zsrc))
    if args.fidelity:
        runs.append(("fidelity", "csv", src))

    size_mb = src.stat().st_size / 2**20
    print(f"\nfile: {args.rows:,} rows, {size_mb:,.0f} MiB, 2019 official layout; "
          f"n={args.n}, seed={args.seed}, block {args.block_mb} MiB, {os.cpu_count()} CPUs")
    head = (f"{'task':<10} {'input':<6} {'seconds':>8} {'rows/s':>12} {'peak RSS MiB':>13} "
            f"{'after imports':>14} {'arrow peak MiB':>15}")
    print(head)
    print("-" * len(head))
    for kind, fmt, path in runs:
        r = child(kind, path, args.n, args.seed, args.block_mb)
        print(f"{kind:<10} {fmt:<6} {r['seconds']:8.1f} {args.rows / r['seconds']:12,.0f} "
              f"{r['peak_rss_mb']:13,.0f} {r['import_rss_mb']:14,.0f} "
              f"{r['arrow_peak_mb']:15,.0f}")


if __name__ == "__main__":
    main()
