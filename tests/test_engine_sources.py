"""Weights from s3:// land once per node: 4 actors ask for the same model folder on the
SeaweedFS server at once; one copy is made, all 4 load it (tokenizer and every weight
tensor), and the storage endpoint given beats a wrong one in the environment."""

from __future__ import annotations

import os
import shutil
import socket
import sys
import time
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from persona_gen.engines import bundled
from persona_gen.engines.sources import fetch_s3, s3_cache_folder
from persona_gen.storage.settings import S3Settings
from persona_gen.storage.uri import resolve

pytestmark = pytest.mark.ray
MODEL = "smollm2-135m-instruct"


class _Loader:
    """An engine actor's start, without vLLM: fetch the folder, then load from it."""

    def load(self, uri: str, endpoint: str) -> dict:
        from safetensors import safe_open
        from transformers import AutoConfig, AutoTokenizer

        folder, copied = fetch_s3(uri, S3Settings(endpoint_url=endpoint))
        AutoConfig.from_pretrained(folder)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        tensors = 0
        for f in sorted(Path(folder).glob("*.safetensors")):
            with safe_open(str(f), framework="pt") as st:
                for name in st.keys():  # noqa: SIM118 (safe_open is not iterable)
                    st.get_tensor(name)
                    tensors += 1
        return {"folder": str(folder), "copied": copied, "tensors": tensors,
                "vocab": len(tokenizer)}


def test_four_actors_fetch_one_copy_and_all_load(tmp_path, s3_bucket, s3_server, ray_local):
    import ray
    from ray import cloudpickle

    # Ship _Loader by value: workers cannot import this test module by its pytest name.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    source = bundled.ensure(MODEL)
    uri = f"s3://{s3_bucket}/models/{MODEL}"
    endpoint = s3_server.env()["AWS_ENDPOINT_URL"]
    dest = resolve(uri, S3Settings(endpoint_url=endpoint))
    pafs.copy_files(str(source), dest.path, source_filesystem=pafs.LocalFileSystem(),
                    destination_filesystem=dest.fs)
    cache = tmp_path / "cache"
    # The actors' environment points at a closed port: only the endpoint passed in works.
    env = {"PERSONA_GEN_CACHE": str(cache), "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    actor = ray.remote(_Loader).options(num_cpus=0.25, runtime_env={"env_vars": env})
    loaders = [actor.remote() for _ in range(4)]
    out = ray.get([a.load.remote(uri, endpoint) for a in loaders], timeout=600)
    for a in loaders:
        ray.kill(a)
    assert sum(o["copied"] for o in out) == 1
    assert len({o["folder"] for o in out}) == 1
    assert all(o["tensors"] > 0 and o["tensors"] == out[0]["tensors"] for o in out)
    assert all(o["vocab"] == out[0]["vocab"] > 1000 for o in out)
    folder = Path(out[0]["folder"])
    assert folder.is_relative_to(cache)
    # Nothing left behind but the one copy and its lock.
    leftovers = {p.name for p in folder.parent.iterdir()}
    assert leftovers == {folder.name, f".{folder.name}.lock"}


def test_cache_folder_is_per_endpoint(monkeypatch, tmp_path):
    monkeypatch.setenv("PERSONA_GEN_CACHE", str(tmp_path))
    a = s3_cache_folder("s3://b/m", S3Settings(endpoint_url="http://127.0.0.1:8333"))
    b = s3_cache_folder("s3://b/m", S3Settings(endpoint_url="https://minio.example:9000"))
    assert a != b and a.name == b.name == "m"


def _tiny_model(s3_bucket: str, s3_server, name: str) -> tuple[str, str, int]:
    """A small model folder on the S3 server: (uri, endpoint, bytes)."""
    uri = f"s3://{s3_bucket}/models/{name}"
    endpoint = s3_server.env()["AWS_ENDPOINT_URL"]
    dest = resolve(uri, S3Settings(endpoint_url=endpoint))
    files = {"config.json": b'{"model_type": "llama"}', "model.safetensors": b"\0" * 200_000}
    for fname, data in files.items():
        with dest.fs.open_output_stream(f"{dest.path}/{fname}") as f:
            f.write(data)
    return uri, endpoint, sum(len(d) for d in files.values())


def test_stale_partial_copies_are_removed_under_the_lock(tmp_path, monkeypatch, s3_bucket,
                                                         s3_server):
    """Copies left by killed engines (any pid) and an unmarked folder go, but only once the
    copier holds the node's lock: while another process holds it, nothing is touched."""
    import fcntl
    import threading

    monkeypatch.setenv("PERSONA_GEN_CACHE", str(tmp_path / "cache"))
    uri, endpoint, _ = _tiny_model(s3_bucket, s3_server, "tiny")
    s3 = S3Settings(endpoint_url=endpoint)
    target = s3_cache_folder(uri, s3)
    target.parent.mkdir(parents=True)
    stale = [target.parent / f".{target.name}.tmp-{pid}" for pid in (111, 222, os.getpid())]
    for folder in [*stale, target]:
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"half")
    result: list[tuple[Path, bool]] = []
    with (target.parent / f".{target.name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        copier = threading.Thread(target=lambda: result.append(fetch_s3(uri, s3)))
        copier.start()
        time.sleep(1.0)
        assert all(p.is_dir() for p in stale) and not result  # waiting for the lock
    copier.join(60)
    assert result and result[0] == (target, True)
    assert not any(p.exists() for p in stale)
    assert {p.name for p in target.iterdir()} == {"config.json", "model.safetensors",
                                                  ".persona-gen-complete"}
    assert (target / "model.safetensors").stat().st_size == 200_000


def test_too_little_disk_is_one_line_naming_node_folder_and_sizes(tmp_path, monkeypatch,
                                                                  s3_bucket, s3_server):
    from persona_gen.engines import sources
    from persona_gen.errors import StorageError

    monkeypatch.setenv("PERSONA_GEN_CACHE", str(tmp_path / "cache"))
    uri, endpoint, size = _tiny_model(s3_bucket, s3_server, "big")
    real = shutil.disk_usage
    monkeypatch.setattr(sources.shutil, "disk_usage",
                        lambda p: real(p)._replace(free=500_000_000))
    with pytest.raises(StorageError) as err:
        fetch_s3(uri, S3Settings(endpoint_url=endpoint))
    text = str(err.value)
    folder = s3_cache_folder(uri, S3Settings(endpoint_url=endpoint)).parent
    assert sources.node_name().startswith(socket.gethostname())  # and the Ray node's address
    assert text == (f"{uri}: node {sources.node_name()}: {folder} has 500.0 MB free; the model "
                    f"folder needs {size / 1e6:.1f} MB (give the model volume more room, or set "
                    "PERSONA_GEN_CACHE to a larger disk)")
    # Nothing half-written: no copy started.
    assert [p.name for p in folder.iterdir()] == [f".{uri.rsplit('/', 1)[1]}.lock"]
