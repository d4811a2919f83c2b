"""Shared fixtures: a real SeaweedFS S3 server on loopback, a local Ray, the census data,
and the bundled model through real vLLM on CPU."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from persona_gen.engines.registry import MODELS_DIR_ENV
from persona_gen.storage.local_server import LocalS3Server

if TYPE_CHECKING:
    from persona_gen.engines.base import Engine

ROOT = Path(__file__).resolve().parents[1]
CENSUS_DIR = ROOT.parent / "shared" / "census"


@pytest.fixture
def models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty user model folder (MODELS_DIR_ENV) for this test."""
    folder = tmp_path / "models"
    folder.mkdir()
    monkeypatch.setenv(MODELS_DIR_ENV, str(folder))
    return folder


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalS3Server]:
    """One real S3 server (SeaweedFS `weed mini`) per test session, credentials enforced."""
    server = LocalS3Server(tmp_path_factory.mktemp("seaweedfs")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_server: LocalS3Server, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket; the AWS_* variables point at the local server for this test."""
    name = f"t-{uuid.uuid4().hex[:12]}"
    s3_server.create_bucket(name)
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    return name


@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """gcp-storage-emulator on loopback, one per session; skipped, with the reason, when it
    cannot start (never passed)."""
    from persona_gen.storage.emulators import GcsEmulator

    try:
        server = GcsEmulator(tmp_path_factory.mktemp("gcs")).start()
    except Exception as exc:
        pytest.skip(f"GCS emulator did not start: {str(exc).splitlines()[0]}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def azurite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Azurite's Blob service on loopback, one per session (`make azurite` installs it);
    skipped, with the reason, when it cannot start (never passed)."""
    from persona_gen.storage.emulators import AzuriteServer

    try:
        server = AzuriteServer(tmp_path_factory.mktemp("azurite")).start()
    except Exception as exc:
        pytest.skip(f"Azurite did not start: {str(exc).splitlines()[0]}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def ray_local(s3_server: LocalS3Server) -> Iterator[None]:
    """A local Ray instance sized for a 2-core box; actors must ask for fractional CPUs.

    Its workers get the local S3 server's settings up front: they inherit the environment
    of Ray's start, not of the test that later points AWS_* at the server.
    """
    import ray

    if not ray.is_initialized():
        env = {"PYTHONPATH": str(ROOT), **s3_server.env()}
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 ignore_reinit_error=True, runtime_env={"env_vars": env})
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def census_dir() -> Path:
    if not CENSUS_DIR.is_dir():
        pytest.skip(f"census data not found at {CENSUS_DIR} (shared/ is laid beside the repo)")
    return CENSUS_DIR


@pytest.fixture(autouse=True)
def _no_ambient_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never reach a real cloud: drop any AWS, Google or Azure storage settings from
    the developer's shell."""
    for key in list(os.environ):
        if key.startswith(("AWS_", "AZURE_STORAGE_", "GOOGLE_")) \
                or key == "STORAGE_EMULATOR_HOST":
            monkeypatch.delenv(key, raising=False)


@pytest.fixture(scope="session")
def bundled_engine() -> Iterator[Engine]:
    """The bundled model (SmolLM2-135M-Instruct) in real vLLM on CPU, one per test session.

    Starting it takes about half a minute, so every `@pytest.mark.model` test shares this
    one engine. Keep max_tokens small (16-48) in tests; the engine keeps no state between
    calls, so tests may use it in any order.
    """
    from persona_gen.engines.factory import create_engine

    engine = create_engine("smollm2-135m-instruct")
    try:
        yield engine
    finally:
        engine.close()


@pytest.fixture
def echo_models(tmp_path, monkeypatch) -> list[str]:
    """A second no-model engine under another name, so the report has two models to compare."""
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "echo-b.yaml").write_text(yaml.safe_dump(
        {"name": "echo-b", "engine": "echo", "max_model_len": 2048, "runs_on": ["cpu"]}))
    monkeypatch.setenv("PERSONA_GEN_MODELS_DIR", str(folder))
    return ["echo", "echo-b"]
