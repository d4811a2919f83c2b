"""`persona-gen storage check`: write, list, read and delete a probe object."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from persona_gen.errors import StorageError
from persona_gen.storage import objects, s3_client
from persona_gen.storage.settings import S3Settings
from persona_gen.storage.uri import Location, resolve


@dataclass
class CheckReport:
    uri: str
    steps: list[str] = field(default_factory=list)


def check(uri: str, settings: S3Settings | None = None) -> CheckReport:
    settings = settings or S3Settings()
    loc = resolve(uri, settings)
    probe = loc.child(f"_persona-gen-probe-{uuid.uuid4().hex}")
    report = CheckReport(uri=loc.uri)
    if loc.is_s3:
        _check_s3(loc, probe, settings, report)
    else:
        _check_local(loc, probe, report)
    return report


def _check_s3(loc: Location, probe: Location, settings: S3Settings, report: CheckReport) -> None:
    # A check reports what is wrong now, rather than retrying it for a minute.
    s3 = s3_client.client(settings, max_attempts=2)
    bucket = loc.bucket
    s3_client.require_bucket(s3, bucket, settings)
    report.steps.append(f"bucket '{bucket}' reachable")
    body = b"persona-gen storage probe"
    try:
        s3.put_object(Bucket=bucket, Key=probe.key, Body=body)
        report.steps.append("write")
        keys = list(s3_client.iter_keys(s3, bucket, probe.key))
        if probe.key not in keys:
            raise StorageError("wrote a probe object but listing does not show it",
                               source=probe.uri)
        report.steps.append("list")
    except StorageError:
        raise
    except Exception as exc:
        raise s3_client.explain(exc, bucket, settings) from None
    try:
        # Read through pyarrow: that is how the pipeline reads and writes data.
        if objects.read_bytes(probe) != body:
            raise StorageError("probe object read back differs from what was written",
                               source=probe.uri)
        report.steps.append("read")
    except OSError as exc:
        raise StorageError(f"pyarrow could not read the probe object: {exc}",
                           source=probe.uri) from None
    finally:
        try:
            s3.delete_object(Bucket=bucket, Key=probe.key)
        except Exception as exc:
            raise s3_client.explain(exc, bucket, settings) from None
    report.steps.append("delete")


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
