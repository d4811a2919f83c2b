"""Weights from s3:// land once per node: 4 actors ask for the same model folder on the
SeaweedFS server at once; one copy is made, all 4 load it (tokenizer and every weight
tensor), and the storage endpoint given beats a wrong one in the environment."""

from __future__ import annotations

import sys
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
