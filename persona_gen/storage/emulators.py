"""Real GCS and Azure Blob servers on loopback, for tests and benchmarks: the PyPI
`gcp-storage-emulator` (Google Cloud Storage JSON API) and Azurite (Microsoft's Azure
Storage emulator, from npm). Like `local_server.LocalS3Server`, each binds 127.0.0.1 only,
on a free port, and hands out the environment a client needs to reach it: the same
variables a user sets for the real service (`STORAGE_EMULATOR_HOST` is Google's switch to
an emulator; `AZURE_STORAGE_CONNECTION_STRING` is Azure's).

Install: `make setup` (gcp-storage-emulator) and `make azurite` (npm, into .venv/azurite).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from persona_gen.errors import StorageError
from persona_gen.storage.local_server import free_ports

# Azurite's well-known development account (published in Microsoft's Azurite docs; it
# only ever opens the local emulator).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
               "KBHBeksoGMGw==")

# The PyPI emulator serves one request at a time on a plain HTTPServer. pyarrow's GCS
# client opens a whole-object download when it opens a file for random access and then
# reads ranges on other connections; a single-threaded server blocks writing the abandoned
# download and never answers the range read. This launcher serves each request on its own
# thread and serialises the emulator's storage calls (its storage keeps no locks).
_GCS_LAUNCHER = r"""
import functools, http.server, sys, threading
from gcp_storage_emulator import server, storage
server.server.HTTPServer = http.server.ThreadingHTTPServer
lock = threading.RLock()
def locked(fn):
    @functools.wraps(fn)
    def call(*a, **k):
        with lock:
            return fn(*a, **k)
    return call
for name, fn in list(vars(storage.Storage).items()):
    if callable(fn) and not isinstance(fn, (staticmethod, classmethod)) \
            and not name.startswith("__"):
        setattr(storage.Storage, name, locked(fn))
from gcp_storage_emulator.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise StorageError(f"{what} exited with {proc.returncode}:\n{tail}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return  # it answers: an error status is still a live server
        except OSError:
            time.sleep(0.2)
    raise StorageError(f"{what} did not answer within {timeout_s:.0f}s")


def _stop(proc: subprocess.Popen | None) -> None:
    if proc and proc.poll() is None:
        # A test server's data does not matter: a short grace period, then SIGKILL (Azurite
        # can take many seconds to close its keep-alive connections).
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(2)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


@dataclass
class GcsEmulator:
    """gcp-storage-emulator on 127.0.0.1; anonymous access, as the emulator has no auth."""

    data_dir: Path
    port: int = 0
    proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        # Google's client libraries switch to an emulator, without credentials, on this.
        return {"STORAGE_EMULATOR_HOST": self.endpoint}

    def start(self, timeout_s: float = 30.0) -> GcsEmulator:
        try:
            import gcp_storage_emulator  # noqa: F401
        except ImportError:
            raise StorageError("gcp-storage-emulator is not installed (make setup)") from None
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_ports(1)[0]
        log = self.data_dir / "gcs.log"
        cmd = [sys.executable, "-c", _GCS_LAUNCHER, "-d", str(self.data_dir / "data"),
               "start", "--host", "127.0.0.1", "--port", str(self.port), "--quiet"]
        with log.open("ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        try:
            _wait_http(f"{self.endpoint}/storage/v1/b", self.proc, log, timeout_s,
                       "gcp-storage-emulator")
        except StorageError:
            self.stop()
            raise
        return self

    def create_bucket(self, name: str) -> None:
        req = urllib.request.Request(f"{self.endpoint}/storage/v1/b?project=test",
                                     data=json.dumps({"name": name}).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            urllib.request.urlopen(req, timeout=10).read()
        except urllib.error.HTTPError as exc:
            if exc.code != 409:  # 409: it exists already
                raise

    def stop(self) -> None:
        _stop(self.proc)
        self.proc = None

    def __enter__(self) -> GcsEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def azurite_binary() -> str:
    """azurite-blob from `make azurite` (.venv/azurite), $AZURITE_BLOB, or PATH."""
    candidates = [os.environ.get("AZURITE_BLOB", ""),
                  str(Path(sys.executable).parent.parent / "azurite" / "node_modules" / ".bin"
                      / "azurite-blob"),
                  shutil.which("azurite-blob") or ""]
    for c in candidates:
        if c and Path(c).is_file():
            return c
    raise StorageError("azurite-blob was not found: run `make azurite` (needs node and npm)")


@dataclass
class AzuriteServer:
    """Azurite's Blob service on 127.0.0.1, with its development account and key."""

    data_dir: Path
    port: int = 0
    proc: subprocess.Popen | None = None
    account: str = AZURITE_ACCOUNT
    key: str = AZURITE_KEY
    extra_args: list[str] = field(default_factory=list)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/{self.account}"

    def connection_string(self) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={self.account};"
                f"AccountKey={self.key};BlobEndpoint={self.endpoint};")

    def env(self) -> dict[str, str]:
        return {"AZURE_STORAGE_CONNECTION_STRING": self.connection_string()}

    def start(self, timeout_s: float = 60.0) -> AzuriteServer:
        binary = azurite_binary()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_ports(1)[0]
        log = self.data_dir / "azurite.log"
        # --skipApiVersionCheck: pyarrow's Azure SDK may be newer than this Azurite knows.
        cmd = [binary, "--blobHost", "127.0.0.1", "--blobPort", str(self.port),
               "--location", str(self.data_dir / "data"), "--skipApiVersionCheck",
               "--silent", *self.extra_args]
        with log.open("ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        try:
            _wait_http(f"http://127.0.0.1:{self.port}/{self.account}?comp=list", self.proc,
                       log, timeout_s, "azurite")
        except StorageError:
            self.stop()
            raise
        return self

    def create_container(self, name: str) -> None:
        import pyarrow.fs as pafs

        pafs.AzureFileSystem(account_name=self.account, account_key=self.key,
                             blob_storage_authority=f"127.0.0.1:{self.port}",
                             blob_storage_scheme="http", dfs_storage_authority=
                             f"127.0.0.1:{self.port}", dfs_storage_scheme="http"
                             ).create_dir(name)

    create_bucket = create_container

    def stop(self) -> None:
        _stop(self.proc)
        self.proc = None

    def __enter__(self) -> AzuriteServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
