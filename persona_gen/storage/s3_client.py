"""boto3 for what pyarrow does not do: bucket checks, paginated listing, clear S3 errors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import botocore.config
import botocore.exceptions as bex

from persona_gen.errors import StorageError
from persona_gen.storage.settings import S3Settings

_BAD_CREDENTIALS = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken",
                    "ExpiredToken", "InvalidClientTokenId", "AuthorizationHeaderMalformed"}
_NO_PERMISSION = {"AccessDenied", "AllAccessDisabled", "Forbidden"}
_NO_BUCKET = {"NoSuchBucket", "404", "NotFound"}


def client(settings: S3Settings, max_attempts: int = 8) -> Any:
    """A boto3 S3 client; `max_attempts` 1 for checks that must answer at once."""
    cfg = botocore.config.Config(
        connect_timeout=settings.connect_timeout_s,
        read_timeout=settings.request_timeout_s,
        # Standard mode retries throttling, 5xx and connection errors with backoff.
        retries={"max_attempts": max_attempts, "mode": "standard"},
        s3={"addressing_style": "path" if settings.resolved_path_style() else "auto"},
    )
    return boto3.session.Session().client(
        "s3",
        endpoint_url=settings.resolved_endpoint(),
        region_name=settings.resolved_region(),
        config=cfg,
    )


def explain(exc: Exception, bucket: str, settings: S3Settings) -> StorageError:
    """Turn a boto3 exception into one line naming the cause."""
    endpoint = settings.resolved_endpoint() or "AWS S3"
    if isinstance(exc, bex.NoCredentialsError | bex.PartialCredentialsError):
        return StorageError("no S3 credentials found: set AWS_ACCESS_KEY_ID and "
                            "AWS_SECRET_ACCESS_KEY (or an AWS profile)", source=f"s3://{bucket}")
    if isinstance(exc, bex.EndpointConnectionError | bex.ConnectTimeoutError
                  | bex.ConnectionClosedError | bex.ReadTimeoutError):
        return StorageError(f"cannot reach the S3 endpoint {endpoint} (connection refused or "
                            "timed out)", source=f"s3://{bucket}")
    if isinstance(exc, bex.ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in _BAD_CREDENTIALS:
            return StorageError(f"bad S3 credentials: the endpoint {endpoint} rejected the access "
                                f"key or signature ({code})", source=f"s3://{bucket}")
        if code in _NO_BUCKET:
            return StorageError(f"bucket '{bucket}' does not exist at {endpoint}",
                                source=f"s3://{bucket}")
        if code in _NO_PERMISSION or code == "403":
            return StorageError(f"no permission: the credentials are valid but may not do this "
                                f"on bucket '{bucket}' ({code})", source=f"s3://{bucket}")
        return StorageError(f"S3 error {code}: {exc}", source=f"s3://{bucket}")
    return StorageError(f"S3 error: {exc}", source=f"s3://{bucket}")


def require_bucket(s3: Any, bucket: str, settings: S3Settings) -> None:
    """Raise a StorageError naming the cause unless `bucket` exists and is ours to use."""
    try:
        s3.head_bucket(Bucket=bucket)
        return
    except bex.ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code != "403":
            raise explain(exc, bucket, settings) from None
    except Exception as exc:
        raise explain(exc, bucket, settings) from None
    # HEAD answers a bare 403 for both bad keys and denied access; a GET has an error body.
    try:
        s3.list_objects_v2(Bucket=bucket, MaxKeys=1)
    except Exception as exc:
        raise explain(exc, bucket, settings) from None


def iter_keys(s3: Any, bucket: str, prefix: str) -> Iterator[str]:
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            yield obj["Key"]
