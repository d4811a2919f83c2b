"""Parquet streaming through each object store, by filesystem layer: pyarrow's own
filesystems (what persona_gen.storage uses) against fsspec's (s3fs, gcsfs, adlfs, handed to
pyarrow as Parquet readers and writers take them). This is the measurement that chose the
layer (docs/storage.md).

    .venv/bin/python benchmarks/storage_streaming.py [--files 8] [--rows 4000] [--repeats 3]
        [--fsspec-python PATH]

Each store is a real server on 127.0.0.1: SeaweedFS (S3), gcp-storage-emulator (GCS),
Azurite (Azure Blob), plus the local disk. A store whose server cannot start is a row
saying why. The workload is the pipeline's: block files of pair-like rows (persona, prompt,
three ~2 KB answers), each written as one Parquet file, then read back by streaming its
record batches, as the job and export do. fsspec is not a dependency of persona-gen: its
rows appear when s3fs/gcsfs/adlfs import here, or in the interpreter given by
--fsspec-python (a venv with pyarrow, s3fs, gcsfs and adlfs). Table on stdout, progress on
stderr. Not a test: the figures are the machine's and the emulators'.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def make_table(rows: int, seed: int = 0) -> Any:
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i:04d}" for i in range(3000)])

    def texts(words: int) -> list[str]:
        return [" ".join(r) for r in vocab[rng.integers(0, len(vocab), (rows, words))]]

    return pa.table({"pair_id": [f"{uuid.UUID(int=int(i) + 1)}" for i in range(rows)],
                     "persona": texts(150), "instruction": texts(20), "original": texts(300),
                     "critique": texts(200), "data": texts(250)})


def run_layer(layer: str, store: str, base: str, env: dict[str, str], files: int,
              rows: int) -> dict[str, float]:
    """Write `files` Parquet files under base and stream them back; MB/s each way."""
    import pyarrow.parquet as pq

    os.environ.update(env)
    fs, root = filesystem(layer, store, base)
    table = make_table(rows)
    prefix = f"{root}/{layer}-{uuid.uuid4().hex[:8]}"
    if store == "local":
        os.makedirs(prefix, exist_ok=True)  # object stores have no folders to make
    t0 = time.perf_counter()
    for i in range(files):
        pq.write_table(table, f"{prefix}/part-{i:05d}.parquet", filesystem=fs,
                       compression="zstd")
    write_s = time.perf_counter() - t0
    size = sum(fs_size(fs, f"{prefix}/part-{i:05d}.parquet") for i in range(files))
    t0 = time.perf_counter()
    got = 0
    for i in range(files):
        with pq.ParquetFile(f"{prefix}/part-{i:05d}.parquet", filesystem=fs) as pf:
            for batch in pf.iter_batches(batch_size=1024):
                got += batch.num_rows
    read_s = time.perf_counter() - t0
    assert got == files * rows, (got, files * rows)
    return {"mb": size / 1e6, "write_mb_s": size / 1e6 / write_s, "read_mb_s": size / 1e6 / read_s,
            "write_s": write_s, "read_s": read_s}


def fs_size(fs: Any, path: str) -> int:
    import pyarrow.fs as pafs

    if isinstance(fs, pafs.FileSystem):
        return fs.get_file_info(path).size
    return int(fs.info(path)["size"])


def filesystem(layer: str, store: str, base: str) -> tuple[Any, str]:
    """(filesystem, root path) for a layer and store; base is the URI under test."""
    path = base.split("://", 1)[1] if "://" in base else base
    if layer == "pyarrow":
        sys.path.insert(0, str(ROOT))
        from persona_gen.storage import resolve

        loc = resolve(base)
        return loc.fs, loc.path
    if store == "local":
        import fsspec

        return fsspec.filesystem("file"), path
    if store == "s3":
        import s3fs

        return s3fs.S3FileSystem(endpoint_url=os.environ["AWS_ENDPOINT_URL"],
                                 key=os.environ["AWS_ACCESS_KEY_ID"],
                                 secret=os.environ["AWS_SECRET_ACCESS_KEY"]), path
    if store == "gs":
        import gcsfs

        return gcsfs.GCSFileSystem(endpoint_url=os.environ["STORAGE_EMULATOR_HOST"],
                                   token="anon"), path
    if store == "az":
        import adlfs

        return adlfs.AzureBlobFileSystem(
            connection_string=os.environ["AZURE_STORAGE_CONNECTION_STRING"]), path
    raise ValueError(store)


def worker(argv: list[str]) -> None:
    """One (layer, store) measurement in this interpreter; JSON on stdout."""
    layer, store, base, files, rows = argv[0], argv[1], argv[2], int(argv[3]), int(argv[4])
    env = json.loads(argv[5])
    print(json.dumps(run_layer(layer, store, base, env, files, rows)))


def measure(python: str, layer: str, store: str, base: str, env: dict[str, str], files: int,
            rows: int) -> dict[str, Any]:
    """In a fresh process, so each row starts without warm connections or caches."""
    try:
        proc = subprocess.run([python, __file__, "--worker", layer, store, base, str(files),
                               str(rows), json.dumps(env)], capture_output=True, text=True,
                              timeout=240, env={**os.environ, "PYTHONPATH": str(ROOT)})
    except subprocess.TimeoutExpired:
        return {"error": "no answer within 240 s against this server"}
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or ["failed"]
        last = next((ln for ln in reversed(lines) if "Error" in ln), lines[-1])
        return {"error": last[:90]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--rows", type=int, default=4000, help="rows per block file")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--fsspec-python", default=None,
                    help="interpreter with s3fs, gcsfs and adlfs (default: this one, if it has them)")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from persona_gen.storage.emulators import AzuriteServer, GcsEmulator
    from persona_gen.storage.local_server import LocalS3Server

    work = Path(tempfile.mkdtemp(prefix="storage-bench-"))
    servers: list[Any] = []
    stores: dict[str, tuple[str, dict[str, str]] | str] = {"local": (str(work / "local"), {})}
    for name, make in (("s3", lambda: LocalS3Server(work / "s3")),
                       ("gs", lambda: GcsEmulator(work / "gs")),
                       ("az", lambda: AzuriteServer(work / "az"))):
        try:
            server = make().start()
        except Exception as exc:
            stores[name] = f"server did not start: {str(exc).splitlines()[0][:60]}"
            continue
        servers.append(server)
        server.create_bucket("bench")
        stores[name] = (f"{name}://bench/blocks", server.env())
    fsspec_python = args.fsspec_python
    if fsspec_python is None:
        try:
            import adlfs  # noqa: F401
            import gcsfs  # noqa: F401
            import s3fs  # noqa: F401

            fsspec_python = sys.executable
        except ImportError:
            pass
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    try:
        for rep in range(args.repeats):
            # Alternate which layer goes first, so a busy moment of a shared machine does not
            # always land on the same one; each row is the median over the repeats.
            layers = [("pyarrow", sys.executable), ("fsspec", fsspec_python)]
            for store, spec in stores.items():
                for layer, python in layers if rep % 2 == 0 else layers[::-1]:
                    if isinstance(spec, str):
                        result = {"error": spec}
                    elif python is None:
                        result = {"error": "s3fs/gcsfs/adlfs not installed"}
                    elif any("error" in r for r in results.get((store, layer), [])):
                        continue  # failed once: not again
                    else:
                        log(f"round {rep + 1}: {store} / {layer} ...")
                        result = measure(python, layer, store, spec[0], spec[1], args.files,
                                         args.rows)
                    results.setdefault((store, layer), []).append(result)
    finally:
        for s in servers:
            s.stop()
    print(f"Parquet streaming: {args.files} block files x {args.rows} pair rows each "
          f"(zstd), written then read back batch by batch; median of {args.repeats} rounds")
    print(f"{'store':<6} {'layer':<8} {'MB':>6} {'write MB/s':>11} {'read MB/s':>10}")
    for (store, layer), runs in results.items():
        ok = [r for r in runs if "error" not in r]
        if not ok:
            print(f"{store:<6} {layer:<8} {'-':>6} {'-':>11} {'-':>10}  ({runs[0]['error']})")
            continue
        def median(key: str, ok: list[dict[str, Any]] = ok) -> float:
            return statistics.median(r[key] for r in ok)
        print(f"{store:<6} {layer:<8} {median('mb'):>6.1f} {median('write_mb_s'):>11.1f} "
              f"{median('read_mb_s'):>10.1f}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2:])
    else:
        main()
