"""Where each object store's API lives. Never credentials: those come from each cloud's
standard chain (environment, profile, instance/pod identity), never from config files."""

from __future__ import annotations

import os
from typing import Any

from pydantic import Field, model_validator

from persona_gen.config.base import StrictModel

_SECRET_KEYS = {"access_key", "secret_key", "aws_access_key_id", "aws_secret_access_key",
                "session_token", "aws_session_token", "password", "secret", "account_key",
                "sas_token", "connection_string", "client_secret", "credentials"}


def azure_connection_string() -> dict[str, str]:
    """$AZURE_STORAGE_CONNECTION_STRING as a dict (Azure's `Key=Value;...` form)."""
    text = os.environ.get("AZURE_STORAGE_CONNECTION_STRING", "")
    parts = (p.split("=", 1) for p in text.split(";") if "=" in p)
    return {k.strip(): v.strip() for k, v in parts}


class StorageSettings(StrictModel):
    """The `storage:` section. Credentials are read from each cloud's chain:
    AWS_* variables, a profile or IRSA for s3://; Application Default Credentials
    (GOOGLE_APPLICATION_CREDENTIALS, gcloud, Workload Identity) for gs://; an account key,
    SAS token or connection string from AZURE_STORAGE_* variables, else Azure's default
    credential (managed identity, workload identity, az login) for az://."""

    endpoint_url: str | None = None
    """S3 endpoint (MinIO, SeaweedFS, ...); defaults to $AWS_ENDPOINT_URL, then AWS itself."""
    region: str | None = None
    """S3 region. Defaults to $AWS_REGION, then $AWS_DEFAULT_REGION, then us-east-1."""
    path_style: bool | None = None
    """S3 path-style addressing; defaults to on whenever a custom endpoint is used."""
    gcs_endpoint_url: str | None = None
    """GCS endpoint (an emulator); defaults to $STORAGE_EMULATOR_HOST, then Google itself.
    An emulator is reached without credentials, as Google's own clients do."""
    azure_account: str | None = None
    """Azure storage account of az:// URIs; defaults to $AZURE_STORAGE_ACCOUNT_NAME (or the
    account of $AZURE_STORAGE_CONNECTION_STRING)."""
    azure_blob_endpoint: str | None = None
    """Azure Blob endpoint (Azurite, a sovereign cloud); defaults to the connection string's
    BlobEndpoint, then https://<account>.blob.core.windows.net."""
    connect_timeout_s: float = 5.0
    request_timeout_s: float = 30.0
    retry_budget_s: float = Field(default=120.0, ge=0)
    """How long one storage operation keeps retrying transient failures (unreachable
    endpoint, 5xx, throttling) with backoff before the run fails naming endpoint and
    operation. 0: no retries beyond the client library's own."""

    @model_validator(mode="before")
    @classmethod
    def _no_secrets(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in data:
                if str(key).lower() in _SECRET_KEYS:
                    raise ValueError(
                        f"'{key}' is a secret and is never read from config files; set it in "
                        "the environment (AWS_*, GOOGLE_APPLICATION_CREDENTIALS, AZURE_STORAGE_*)"
                        " or use the cloud's workload identity"
                    )
        return data

    # ---- S3 -----------------------------------------------------------------------------
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

    # ---- GCS ----------------------------------------------------------------------------
    def resolved_gcs_endpoint(self) -> str | None:
        found = self.gcs_endpoint_url or os.environ.get("STORAGE_EMULATOR_HOST")
        if found and "://" not in found:
            found = f"http://{found}"  # Google's clients accept a bare host:port here
        return found

    # ---- Azure --------------------------------------------------------------------------
    def resolved_azure_account(self) -> str | None:
        return (self.azure_account or os.environ.get("AZURE_STORAGE_ACCOUNT_NAME")
                or os.environ.get("AZURE_STORAGE_ACCOUNT")
                or azure_connection_string().get("AccountName"))

    def resolved_azure_endpoint(self, account: str) -> str:
        return (self.azure_blob_endpoint or azure_connection_string().get("BlobEndpoint")
                or f"https://{account}.blob.core.windows.net")


# The settings were S3's alone before gs:// and az:// came; every caller may keep this name.
S3Settings = StorageSettings
