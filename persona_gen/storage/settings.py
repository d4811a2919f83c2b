"""S3 connection settings. Never credentials: those come from the environment / AWS chain."""

from __future__ import annotations

import os
from typing import Any

from pydantic import Field, model_validator

from persona_gen.config.base import StrictModel

_SECRET_KEYS = {"access_key", "secret_key", "aws_access_key_id", "aws_secret_access_key",
                "session_token", "aws_session_token", "password", "secret"}


class S3Settings(StrictModel):
    """Where the S3 API lives. Credentials are read from AWS_* variables or the AWS chain."""

    endpoint_url: str | None = None
    """S3 endpoint (MinIO, SeaweedFS, ...); defaults to $AWS_ENDPOINT_URL, then AWS itself."""
    region: str | None = None
    """Defaults to $AWS_REGION, then $AWS_DEFAULT_REGION, then us-east-1."""
    path_style: bool | None = None
    """Path-style addressing; defaults to on whenever a custom endpoint is used."""
    connect_timeout_s: float = 5.0
    request_timeout_s: float = 30.0
    retry_budget_s: float = Field(default=120.0, ge=0)
    """How long one storage operation keeps retrying transient failures (unreachable
    endpoint, 5xx, SlowDown) with backoff before the run fails naming endpoint and
    operation. 0: no retries beyond the S3 client's own."""

    @model_validator(mode="before")
    @classmethod
    def _no_secrets(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in data:
                if str(key).lower() in _SECRET_KEYS:
                    raise ValueError(
                        f"'{key}' is a secret and is never read from config files; set "
                        "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY in the environment"
                    )
        return data

    def resolved_endpoint(self) -> str | None:
        return self.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get(
            "AWS_ENDPOINT_URL"
        )

    def resolved_region(self) -> str:
        return (
            self.region
            or os.environ.get("AWS_REGION")
            or os.environ.get("AWS_DEFAULT_REGION")
            or "us-east-1"
        )

    def resolved_path_style(self) -> bool:
        if self.path_style is not None:
            return self.path_style
        return self.resolved_endpoint() is not None
