"""Turn a URI (plain path, file://, s3://bucket/prefix) into a pyarrow filesystem + path."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlparse

import pyarrow.fs as pafs

from persona_gen.errors import StorageError
from persona_gen.storage.settings import S3Settings


@dataclass(frozen=True)
class Location:
    """A place in storage: a filesystem and a path within it (no scheme)."""

    fs: pafs.FileSystem
    path: str
    uri: str
    retry_budget_s: float = 0.0
    """Seconds each operation here retries transient failures (storage.retry)."""
    endpoint: str = ""
    """The S3 endpoint, for error messages ("" locally)."""

    @property
    def is_s3(self) -> bool:
        return self.uri.startswith("s3://")

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    def child(self, *parts: str) -> Location:
        rel = "/".join(p.strip("/") for p in parts if p)
        return self.at(f"{self.path.rstrip('/')}/{rel}", f"{self.uri.rstrip('/')}/{rel}")

    def at(self, path: str, uri: str | None = None) -> Location:
        """Another path on the same filesystem, with the same retry budget."""
        return replace(self, path=path, uri=uri or self._uri_of(path))

    def _uri_of(self, path: str) -> str:
        return f"s3://{path}" if self.is_s3 else path

    @property
    def bucket(self) -> str:
        return self.path.split("/", 1)[0]

    @property
    def key(self) -> str:
        return self.path.split("/", 1)[1] if "/" in self.path else ""


def s3_filesystem(settings: S3Settings) -> pafs.S3FileSystem:
    endpoint = settings.resolved_endpoint()
    kwargs: dict = {
        "region": settings.resolved_region(),
        "connect_timeout": settings.connect_timeout_s,
        "request_timeout": settings.request_timeout_s,
        "force_virtual_addressing": not settings.resolved_path_style(),
        # The SDK's own retries absorb throttling (503 SlowDown) and dropped connections;
        # longer outages are ridden out above it, per operation (storage.retry).
        "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=5),
    }
    if endpoint:
        parsed = urlparse(endpoint)
        kwargs["endpoint_override"] = parsed.netloc or parsed.path
        kwargs["scheme"] = parsed.scheme or "https"
    # Credentials: pyarrow reads AWS_ACCESS_KEY_ID etc. and the default chain itself.
    key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if key and secret:
        kwargs.update(access_key=key, secret_key=secret,
                      session_token=os.environ.get("AWS_SESSION_TOKEN"))
    return pafs.S3FileSystem(**kwargs)


def resolve(uri: str | os.PathLike[str], s3: S3Settings | None = None) -> Location:
    """Map a URI to a Location; relative local paths become absolute."""
    text = os.fspath(uri)
    if text.startswith("s3://"):
        path = text[len("s3://"):].strip("/")
        if not path:
            raise StorageError("an s3:// URI needs a bucket, e.g. s3://bucket/prefix", source=text)
        settings = s3 or S3Settings()
        return Location(s3_filesystem(settings), path, f"s3://{path}",
                        retry_budget_s=settings.retry_budget_s,
                        endpoint=settings.resolved_endpoint() or "AWS S3")
    if text.startswith("file://"):
        text = text[len("file://"):]
    elif "://" in text:
        scheme = text.split("://", 1)[0]
        raise StorageError(f"unsupported scheme '{scheme}://' (use a path, file:// or s3://)",
                           source=text)
    path = str(Path(text).expanduser().resolve())
    return Location(pafs.LocalFileSystem(), path, path)
