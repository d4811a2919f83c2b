"""Turn a URI into a pyarrow filesystem and a path: local and shared-filesystem paths (NFS,
Lustre, GPFS: anything mounted), file://, s3://bucket/prefix, gs://bucket/prefix and
az://container/prefix.

Every store goes through pyarrow's own filesystems (`pyarrow.fs`): the one layer the Parquet
reader and writer use natively, in C++, with no Python in the data path
(benchmarks/storage_streaming.py measured it against fsspec: docs/storage.md). Each
filesystem finds its credentials in its cloud's standard chain, so IRSA, GKE Workload
Identity and Azure managed or workload identity work without settings.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse

import pyarrow.fs as pafs

from persona_gen.errors import StorageError
from persona_gen.storage.settings import StorageSettings, azure_connection_string

SCHEMES = {"s3": "s3", "gs": "gs", "gcs": "gs", "az": "az"}
"""URI scheme -> store (gcs:// is an alias of gs://)."""
SUPPORTED = "a path, file://, s3://bucket/prefix, gs://bucket/prefix or az://container/prefix"


@dataclass(frozen=True)
class Location:
    """A place in storage: a filesystem and a path within it (no scheme)."""

    fs: pafs.FileSystem
    path: str
    uri: str
    retry_budget_s: float = 0.0
    """Seconds each operation here retries transient failures (storage.retry)."""
    endpoint: str = ""
    """The store's endpoint, for error messages ("" locally)."""

    @property
    def scheme(self) -> str:
        """'file', 's3', 'gs' or 'az'."""
        head = self.uri.split("://", 1)[0] if "://" in self.uri else "file"
        return SCHEMES.get(head, head)

    @property
    def is_s3(self) -> bool:
        return self.scheme == "s3"

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    @property
    def is_object_store(self) -> bool:
        """s3://, gs:// or az://: no directories, no rename; an object appears when whole."""
        return not self.is_local

    def child(self, *parts: str) -> Location:
        rel = "/".join(p.strip("/") for p in parts if p)
        return self.at(f"{self.path.rstrip('/')}/{rel}", f"{self.uri.rstrip('/')}/{rel}")

    def at(self, path: str, uri: str | None = None) -> Location:
        """Another path on the same filesystem, with the same retry budget."""
        return replace(self, path=path, uri=uri or self._uri_of(path))

    def _uri_of(self, path: str) -> str:
        return path if self.is_local else f"{self.scheme}://{path}"

    @property
    def bucket(self) -> str:
        """The bucket (S3, GCS) or container (Azure)."""
        return self.path.split("/", 1)[0]

    @property
    def key(self) -> str:
        return self.path.split("/", 1)[1] if "/" in self.path else ""


def _netloc(url: str) -> tuple[str, str]:
    parsed = urlparse(url if "://" in url else f"https://{url}")
    return parsed.scheme or "https", parsed.netloc or parsed.path


# ---- S3 ---------------------------------------------------------------------------------

def s3_filesystem(settings: StorageSettings, quick: bool = False) -> pafs.S3FileSystem:
    endpoint = settings.resolved_endpoint()
    key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    # AWS_MAX_ATTEMPTS is the AWS SDKs' own setting for this.
    attempts = int(os.environ.get("AWS_MAX_ATTEMPTS") or 5)
    return _s3(endpoint, settings.resolved_region(), settings.resolved_path_style(),
               settings.connect_timeout_s, settings.request_timeout_s, key, secret,
               os.environ.get("AWS_SESSION_TOKEN"), min(attempts, 2) if quick else attempts)


@lru_cache(maxsize=16)
def _s3(endpoint: str | None, region: str, path_style: bool, connect_s: float, request_s: float,
        key: str | None, secret: str | None, token: str | None, attempts: int
        ) -> pafs.S3FileSystem:
    kwargs: dict = {
        "region": region,
        "connect_timeout": connect_s,
        "request_timeout": request_s,
        "force_virtual_addressing": not path_style,
        # The SDK's own retries absorb throttling (503 SlowDown) and dropped connections;
        # longer outages are ridden out above it, per operation (storage.retry).
        "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=attempts),
    }
    if endpoint:
        kwargs["scheme"], kwargs["endpoint_override"] = _netloc(endpoint)
    # Otherwise the AWS SDK's default chain: environment, profile, web identity (IRSA),
    # container and instance roles.
    if key and secret:
        kwargs.update(access_key=key, secret_key=secret, session_token=token)
    return pafs.S3FileSystem(**kwargs)


# ---- GCS --------------------------------------------------------------------------------

def gcs_filesystem(settings: StorageSettings, quick: bool = False) -> pafs.GcsFileSystem:
    return _gcs(settings.resolved_gcs_endpoint(), os.environ.get("GOOGLE_CLOUD_PROJECT"),
                2 if quick else 15)


@lru_cache(maxsize=8)
def _gcs(endpoint: str | None, project: str | None, retry_s: int) -> pafs.GcsFileSystem:
    # The client retries transient errors itself for a short while; longer outages are
    # ridden out above it, per operation (storage.retry), like S3's.
    kwargs: dict = {"retry_time_limit": datetime.timedelta(seconds=retry_s),
                    "project_id": project}
    if endpoint:
        # An emulator, reached without credentials as Google's own clients do.
        kwargs["scheme"], kwargs["endpoint_override"] = _netloc(endpoint)
        kwargs["anonymous"] = True
    # Otherwise Application Default Credentials: GOOGLE_APPLICATION_CREDENTIALS, gcloud's
    # login, or the metadata server (GKE Workload Identity, a VM's service account).
    return pafs.GcsFileSystem(**kwargs)


# ---- Azure Blob -------------------------------------------------------------------------

def azure_filesystem(settings: StorageSettings, uri: str) -> pafs.AzureFileSystem:
    account = settings.resolved_azure_account()
    if not account:
        raise StorageError("az:// needs a storage account: set storage.azure_account or "
                           "AZURE_STORAGE_ACCOUNT_NAME (or AZURE_STORAGE_CONNECTION_STRING)",
                           source=uri)
    conn = azure_connection_string()
    key = os.environ.get("AZURE_STORAGE_KEY") or os.environ.get("AZURE_STORAGE_ACCOUNT_KEY") \
        or conn.get("AccountKey")
    sas = os.environ.get("AZURE_STORAGE_SAS_TOKEN") or conn.get("SharedAccessSignature")
    return _azure(account, settings.resolved_azure_endpoint(account), key, None if key else sas)


@lru_cache(maxsize=8)
def _azure(account: str, endpoint: str, key: str | None, sas: str | None
           ) -> pafs.AzureFileSystem:
    scheme, host = _netloc(endpoint)
    if host.startswith(f"{account}."):
        # pyarrow puts the account in front of a service domain itself.
        blob, dfs = host[len(account):], host[len(account):].replace(".blob.", ".dfs.", 1)
    else:
        blob = dfs = host  # an emulator: the account travels in the path
    kwargs: dict = {"account_name": account, "blob_storage_authority": blob,
                    "dfs_storage_authority": dfs, "blob_storage_scheme": scheme,
                    "dfs_storage_scheme": scheme}
    # Neither a key nor a SAS token: Azure's default credential (environment, workload
    # identity on AKS, managed identity, az login).
    if key:
        kwargs["account_key"] = key
    elif sas:
        kwargs["sas_token"] = sas.lstrip("?")
    return pafs.AzureFileSystem(**kwargs)


def store_endpoint(uri: str, settings: StorageSettings | None = None) -> str:
    """The endpoint an object-store URI is reached at ("" for a local path): what error
    messages name, and what keeps caches of two services with the same bucket name apart."""
    head = uri.split("://", 1)[0] if "://" in uri else ""
    store = SCHEMES.get(head)
    settings = settings or StorageSettings()
    if store == "s3":
        return settings.resolved_endpoint() or "AWS S3"
    if store == "gs":
        return settings.resolved_gcs_endpoint() or "Google Cloud Storage"
    if store == "az":
        account = settings.resolved_azure_account()
        return settings.resolved_azure_endpoint(account) if account else "Azure Blob"
    return ""


def resolve(uri: str | os.PathLike[str], settings: StorageSettings | None = None, *,
            quick: bool = False) -> Location:
    """Map a URI to a Location; relative local paths become absolute. `quick`: the client
    gives up on an unreachable endpoint after a try or two (for checks that must answer now)."""
    text = os.fspath(uri)
    head = text.split("://", 1)[0] if "://" in text else ""
    if head in SCHEMES:
        store = SCHEMES[head]
        path = text.split("://", 1)[1].strip("/")
        if not path:
            what = "container" if store == "az" else "bucket"
            raise StorageError(f"a {store}:// URI needs a {what}, e.g. {store}://{what}/prefix",
                               source=text)
        settings = settings or StorageSettings()
        if store == "s3":
            fs: pafs.FileSystem = s3_filesystem(settings, quick)
        elif store == "gs":
            fs = gcs_filesystem(settings, quick)
        else:
            fs = azure_filesystem(settings, text)
        endpoint = store_endpoint(text, settings)
        return Location(fs, path, f"{store}://{path}", retry_budget_s=settings.retry_budget_s,
                        endpoint=endpoint)
    if head == "file":
        text = text[len("file://"):]
    elif head:
        raise StorageError(f"unsupported scheme '{head}://' (use {SUPPORTED})", source=text)
    path = str(Path(text).expanduser().resolve())
    return Location(pafs.LocalFileSystem(), path, path)
