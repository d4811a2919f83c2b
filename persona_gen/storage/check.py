"""`persona-gen storage check`: write, list, read and delete a probe object, through the
same filesystem layer the pipeline uses, and say in one line what failed."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace

import pyarrow.fs as pafs

from persona_gen.errors import StorageError
from persona_gen.storage import objects
from persona_gen.storage.retry import is_transient
from persona_gen.storage.settings import StorageSettings
from persona_gen.storage.uri import Location, resolve

STORE_NAMES = {"s3": "S3", "gs": "GCS", "az": "Azure Blob", "file": "local"}

# Substrings of pyarrow's S3 (AWS SDK), GCS (google-cloud-cpp) and Azure SDK errors.
_BAD_CREDENTIALS = ("SIGNATURE_DOES_NOT_MATCH", "INVALID_ACCESS_KEY_ID", "SignatureDoesNotMatch",
                    "InvalidAccessKeyId", "EXPIRED_TOKEN", "ExpiredToken", "InvalidToken",
                    "UNAUTHENTICATED", "invalid_grant", "[AuthenticationFailed]",
                    "failed to authenticate the request")
_NO_CREDENTIALS = ("Could not automatically determine credentials", "No credentials",
                   "DefaultAzureCredential", "ManagedIdentityCredential", "Unable to locate "
                   "credentials", "NoCredentialProviders")
_NO_PERMISSION = ("ACCESS_DENIED", "AccessDenied", "PERMISSION_DENIED",
                  "[AuthorizationPermissionMismatch]", "[AuthorizationFailure]",
                  "[InsufficientAccountPermissions]", "403")
_NO_BUCKET = ("NoSuchBucket", "NO_SUCH_BUCKET", "[ContainerNotFound]")


@dataclass
class CheckReport:
    uri: str
    steps: list[str] = field(default_factory=list)


def explain(exc: BaseException, loc: Location) -> StorageError:
    """One line naming the cause of a storage failure, for any store."""
    text = str(exc)
    store = STORE_NAMES.get(loc.scheme, loc.scheme)
    what = "container" if loc.scheme == "az" else "bucket"
    target = f"{loc.scheme}://{loc.bucket}"
    if is_transient(exc):
        return StorageError(f"cannot reach the {store} endpoint {loc.endpoint} (connection "
                            "refused or timed out)", source=target)
    if any(p in text for p in _BAD_CREDENTIALS):
        return StorageError(f"bad {store} credentials: the endpoint {loc.endpoint} rejected "
                            "the key, token or signature", source=target)
    if any(p in text for p in _NO_CREDENTIALS):
        return StorageError(f"no {store} credentials found ({_CHAIN[loc.scheme]})",
                            source=target)
    if any(p in text for p in _NO_BUCKET) or isinstance(exc, FileNotFoundError):
        return StorageError(f"{what} '{loc.bucket}' does not exist at {loc.endpoint}",
                            source=target)
    if any(p in text for p in _NO_PERMISSION) or isinstance(exc, PermissionError):
        return StorageError(f"no permission: the credentials are valid but may not do this on "
                            f"{what} '{loc.bucket}'", source=target)
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return StorageError(f"{store} error: {first[:240]}", source=target)


_CHAIN = {
    "s3": "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, an AWS profile, or an IAM role",
    "gs": "set GOOGLE_APPLICATION_CREDENTIALS, run `gcloud auth application-default login`, "
          "or use Workload Identity",
    "az": "set AZURE_STORAGE_KEY or AZURE_STORAGE_CONNECTION_STRING, run `az login`, or use "
          "a managed or workload identity",
    "file": "",
}


def check(uri: str, settings: StorageSettings | None = None) -> CheckReport:
    settings = settings or StorageSettings()
    # A check reports what is wrong now, rather than retrying it for a minute.
    loc = replace(resolve(uri, settings, quick=True), retry_budget_s=0)
    probe = loc.child(f"_persona-gen-probe-{uuid.uuid4().hex}")
    report = CheckReport(uri=loc.uri)
    if loc.is_object_store:
        _check_store(loc, probe, report)
    else:
        _check_local(loc, probe, report)
    return report


def _require_bucket(loc: Location) -> None:
    try:
        kind = loc.fs.get_file_info(loc.bucket).type
    except OSError as exc:
        # S3 answers HEAD with a bare 403 for bad keys and for denied access alike; a
        # listing has an error body that tells them apart.
        try:
            loc.fs.get_file_info(pafs.FileSelector(loc.bucket, allow_not_found=True))
        except OSError as listing:
            raise explain(listing, loc) from None
        raise explain(exc, loc) from None
    if kind == pafs.FileType.NotFound:
        what = "container" if loc.scheme == "az" else "bucket"
        raise StorageError(f"{what} '{loc.bucket}' does not exist at {loc.endpoint}",
                           source=f"{loc.scheme}://{loc.bucket}")


def _check_store(loc: Location, probe: Location, report: CheckReport) -> None:
    _require_bucket(loc)
    report.steps.append(f"{'container' if loc.scheme == 'az' else 'bucket'} "
                        f"'{loc.bucket}' reachable")
    body = b"persona-gen storage probe"
    written = False
    try:
        objects.write_bytes_atomic(probe, body)
        written = True
        report.steps.append("write")
        if probe.path not in objects.list_files(loc):
            raise StorageError("wrote a probe object but listing does not show it",
                               source=probe.uri)
        report.steps.append("list")
        if objects.read_bytes(probe) != body:
            raise StorageError("probe object read back differs from what was written",
                               source=probe.uri)
        report.steps.append("read")
        loc.fs.delete_file(probe.path)
        written = False
        report.steps.append("delete")
    except StorageError:
        raise
    except OSError as exc:
        raise explain(exc, loc) from None
    finally:
        if written:
            objects.delete(probe)


def _check_local(loc: Location, probe: Location, report: CheckReport) -> None:
    try:
        objects.write_bytes_atomic(probe, b"persona-gen storage probe")
        report.steps.append("write")
        if probe.path not in objects.list_files(loc):
            raise StorageError("wrote a probe file but listing does not show it", source=probe.uri)
        report.steps.append("list")
        objects.read_bytes(probe)
        report.steps.append("read")
        objects.delete(probe)
        report.steps.append("delete")
    except PermissionError as exc:
        raise StorageError(f"no permission: {exc.strerror or exc}", source=probe.uri) from None
    except OSError as exc:
        raise StorageError(f"local storage failed: {exc}", source=probe.uri) from None
