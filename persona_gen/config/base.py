"""The base class every config and record model shares."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Rejects unknown keys, so a misspelt key in YAML is an error rather than ignored."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
