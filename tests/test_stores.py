"""The same run on every object store, each a real server on 127.0.0.1: SeaweedFS (s3://),
gcp-storage-emulator (gs://), Azurite (az://).

For each store: census and prompt inputs read from the store, an echo run SIGKILLed (with
its local Ray) while pair blocks stream out, resumed to the end; every planned pair exactly
once, a verdict per pair, no temporary object left; `status` and `export` read the run from
the store and export writes back to it. Plus `census sample --source <store>://...` and
`export --to <store>://...` on their own. A store whose server cannot start is skipped with
the reason (fixtures in conftest.py), never passed.

Slow (an echo run and a resume per store): `make test-cloud`, marker `cloud`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from persona_gen.storage import objects, resolve
from tests.pipeline_helpers import kill_tree, write_config, write_prompt_file

pytestmark = [pytest.mark.cloud, pytest.mark.ray]

ROOT = Path(__file__).resolve().parents[1]
EXCERPT = ROOT / "data" / "census-excerpt" / "national2019.csv.gz"
EXE = [sys.executable, "-m", "persona_gen.cli.main"]
STORES = ("s3", "gs", "az")


@dataclass
class Store:
    scheme: str
    bucket: str
    env: dict[str, str]

    def uri(self, *parts: str) -> str:
        return "/".join([f"{self.scheme}://{self.bucket}", *parts])

    def everything(self, *parts: str) -> list[str]:
        """Every object under a prefix, hidden ones (temporaries) included."""
        loc = resolve(self.uri(*parts))
        if loc.fs.get_file_info(loc.path).type == pafs.FileType.NotFound:
            return []
        return [f.path for f in loc.fs.get_file_info(pafs.FileSelector(loc.path, recursive=True))
                if f.type == pafs.FileType.File]


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    """A fresh bucket (container) on one store; the environment points at its server."""
    server = request.getfixturevalue({"s3": "s3_server", "gs": "gcs_server",
                                      "az": "azurite_server"}[request.param])
    bucket = f"t-{uuid.uuid4().hex[:12]}"
    server.create_bucket(bucket)
    env = server.env()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    yield Store(request.param, bucket, env)


def _cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EXE, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {}), "PYTHONPATH": str(ROOT)})


def _inputs(store: Store, tmp_path: Path, prompts: int) -> tuple[str, str]:
    census = store.uri("inputs", "census", EXCERPT.name)
    objects.upload_file(EXCERPT, resolve(census))
    local = write_prompt_file(tmp_path / "prompts.jsonl", prompts)
    prompt_uri = store.uri("inputs", "prism.jsonl")
    objects.upload_file(local, resolve(prompt_uri))
    return census, prompt_uri


def _pair_blocks(store: Store, run_id: str) -> int:
    return len(objects.list_files(resolve(store.uri("runs", run_id, "feedback", "pairs")),
                                  ".parquet"))


def _read(store: Store, *parts: str) -> Any:
    return objects.read_table(resolve(store.uri(*parts)))


def test_echo_run_killed_mid_pairs_resumes_exactly_once(store: Store, tmp_path: Path) -> None:
    census, prompts = _inputs(store, tmp_path, 60)
    cfg = write_config(tmp_path / "job.yaml", Path("unused"), Path("unused"), store.uri("runs"),
                       census={"sources": [census]}, personas={"n": 40}, prompts={"source": prompts},
                       plan={"train_pairs_per_persona": 3, "seen_test_pairs_per_persona": 1,
                             "heldout_test_pairs_per_persona": 1},
                       pipeline={"batch_size": 8})
    log = tmp_path / "driver.log"
    run_id = "kill"
    argv = [*EXE, "run", "--config", str(cfg), "--run-id", run_id, "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}

    # 1) SIGKILL the driver and its local Ray once pair blocks are streaming out.
    proc = subprocess.Popen(argv, stdout=log.open("ab"), stderr=subprocess.STDOUT,
                            start_new_session=True, env=env, cwd=tmp_path)
    deadline = time.monotonic() + 300
    while _pair_blocks(store, run_id) < 3:
        assert proc.poll() is None, f"driver exited early:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"no pair blocks:\n{log.read_text()[-3000:]}"
        time.sleep(0.1)
    kill_tree(proc)
    killed_at = _pair_blocks(store, run_id)

    # 2) The same command resumes to the end.
    done = subprocess.run(argv, stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env,
                          cwd=tmp_path, timeout=300)
    assert done.returncode == 0, log.read_text()[-3000:]

    plan = _read(store, "runs", run_id, "plan")
    pairs = _read(store, "runs", run_id, "feedback", "pairs")
    verdicts = _read(store, "runs", run_id, "feedback", "verification")
    planned = plan.column("pair_id").to_pylist()
    got = pairs.column("pair_id").to_pylist()
    assert killed_at < _pair_blocks(store, run_id), "the kill came after the last pair block"
    assert len(got) == len(set(got)), "a pair was written twice"
    assert sorted(got) == sorted(planned) and len(planned) == 200
    assert sorted(verdicts.column("pair_id").to_pylist()) == sorted(planned)
    leftovers = [p for p in store.everything("runs", run_id)
                 if p.rsplit("/", 1)[-1].startswith(".tmp-")]
    assert not leftovers, f"temporary objects left behind: {leftovers}"
    manifest = objects.read_json(resolve(store.uri("runs", run_id, "manifest.json")))
    assert manifest["status"] == "complete" and manifest["attempts"] == 2
    assert manifest["counts"]["plan"]["pairs"] == len(planned)

    # `status` reads the run from the store alone.
    status = _cli("status", "--run", store.uri("runs", run_id), "--json")
    assert status.returncode == 0, status.stderr[-2000:]
    state = json.loads(status.stdout)
    assert state["status"] == "complete", state

    # `export` reads it from the store and writes the dataset back to the store.
    target = store.uri("exports", run_id)
    exported = _cli("export", "--run", store.uri("runs", run_id), "--to", target,
                    "--format", "trl-dpo", "--all-pairs")  # every pair, to count them all
    assert exported.returncode == 0, exported.stderr[-2000:]
    assert exported.stdout.strip().splitlines()[0] == target
    names = [p.rsplit("/", 1)[-1] for p in store.everything("exports", run_id)]
    assert "README.md" in names and not [n for n in names if n.startswith(".tmp-")]
    data = [p for p in objects.list_files(resolve(target), ".parquet") if "/data/" in p]
    rows = sum(objects.read_file_table(resolve(target).at(p)).num_rows for p in data)
    assert rows == len(planned)


def test_census_sample_from_the_store_and_export_to_it(store: Store, tmp_path: Path) -> None:
    """`census sample --source <store>://...` and `--out <store>://...`; `export --to` a taken
    target on the store is refused unless --overwrite."""
    census, _ = _inputs(store, tmp_path, 4)
    out = store.uri("samples", "personas.parquet")
    res = _cli("census", "sample", "--source", census, "--n", "12", "--seed", "3", "--to", out)
    assert res.returncode == 0, res.stderr[-2000:]
    local = tmp_path / "local.parquet"
    res = _cli("census", "sample", "--source", str(EXCERPT), "--n", "12", "--seed", "3",
               "--to", str(local))
    assert res.returncode == 0, res.stderr[-2000:]
    from_store = _read(store, "samples", "personas.parquet")
    assert from_store.num_rows == 12
    assert from_store.drop_columns(["source"]).equals(
        pq.read_table(local).drop_columns(["source"]))

    missing = _cli("census", "sample", "--source", store.uri("inputs", "nothing.csv"),
                   "--n", "2", "--to", str(tmp_path / "x.parquet"))
    assert missing.returncode == 65
    err = missing.stderr.strip().splitlines()
    assert len(err) == 1 and store.uri("inputs", "nothing.csv") in err[0], err


def test_storage_check_on_the_store(store: Store) -> None:
    ok = _cli("storage", "check", store.uri("prefix"))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith(f"OK {store.uri('prefix')}") and "write, list, read, delete" \
        in ok.stdout
    assert store.everything("prefix") == []
    missing = _cli("storage", "check", f"{store.scheme}://no-such-bucket-{uuid.uuid4().hex[:6]}/p")
    assert missing.returncode == 65
    assert "does not exist" in missing.stderr and missing.stderr.strip().count("\n") == 0
    if store.scheme == "az":  # the emulators of S3 and Azure check keys; GCS's has no auth
        wrong = store.env["AZURE_STORAGE_CONNECTION_STRING"].replace("AccountKey=Eby8",
                                                                     "AccountKey=Xby8")
        bad = _cli("storage", "check", store.uri("prefix"),
                   env={"AZURE_STORAGE_CONNECTION_STRING": wrong})
        assert bad.returncode == 65 and bad.stderr.strip().count("\n") == 0, bad.stderr
        assert "bad Azure Blob credentials" in bad.stderr and "Xby8" not in bad.stderr


def test_model_weights_in_the_store_are_copied_once_per_node(store: Store, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    """A model `source` on the store (engines/sources.py): copied whole into the node's
    cache with its completion marker, then reused."""
    from persona_gen.engines.sources import classify, materialise, s3_cache_folder

    monkeypatch.setenv("PERSONA_GEN_CACHE", str(tmp_path / "cache"))
    files = {"config.json": b'{"model_type": "tiny"}',
             "model.safetensors": os.urandom(3 * 2**20)}
    for name, body in files.items():
        objects.write_bytes_atomic(resolve(store.uri("models", "tiny", name)), body)
    uri = store.uri("models", "tiny")
    assert classify(uri).kind == "store"
    folder = Path(materialise(uri))
    assert folder == s3_cache_folder(uri) and f"/{store.scheme}/" in str(folder)
    assert {p.name: p.read_bytes() for p in folder.iterdir() if not p.name.startswith(".")} \
        == files
    before = (folder / "model.safetensors").stat().st_mtime_ns
    assert Path(materialise(uri)) == folder  # the second engine on the node reuses the copy
    assert (folder / "model.safetensors").stat().st_mtime_ns == before
