"""A run's address: `<root>/<run_id>/`, with the storage settings needed to reach it.

`RunRef` is built once, from the CLI or the config, and passed whole to everything that
reads or writes the run, Ray workers included: it pickles as three plain values, and each
process resolves its filesystem once, on first use.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from persona_gen.errors import UserError
from persona_gen.storage.settings import StorageSettings
from persona_gen.storage.uri import Location, resolve

_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_run_id(run_id: str) -> str:
    if not _RUN_ID.match(run_id):
        raise UserError(
            f"run id '{run_id}' must be 1-128 letters, digits, '.', '_' or '-'", source="run_id"
        )
    return run_id


@dataclass(frozen=True, eq=False)
class RunRef:
    root_uri: str
    """Where runs live: a path, file://, s3://, gs:// or az://bucket/prefix."""
    run_id: str
    storage: StorageSettings = field(default_factory=StorageSettings)

    @classmethod
    def at(cls, root_uri: str, run_id: str, storage: StorageSettings | None = None) -> RunRef:
        storage = storage or StorageSettings()
        # Normalised once (relative paths made absolute), so every process sees one address.
        return cls(resolve(root_uri, storage).uri, check_run_id(run_id), storage)

    @classmethod
    def parse(cls, run_uri: str, storage: StorageSettings | None = None) -> RunRef:
        """`<root>/<run_id>` as one URI (what `status` prints and `--run` takes)."""
        text = run_uri.rstrip("/")
        if "/" not in (text.split("://", 1)[1] if "://" in text else text).strip("/"):
            raise UserError("a run URI is <root>/<run_id>, e.g. ./out/demo or "
                            "s3://bucket/runs/paper-v1", source=run_uri)
        root, run_id = text.rsplit("/", 1)
        return cls.at(root or "/", run_id, storage)

    @cached_property
    def root(self) -> Location:
        return resolve(self.root_uri, self.storage)

    @property
    def base(self) -> Location:
        return self.root.child(self.run_id)

    @property
    def uri(self) -> str:
        return self.base.uri

    def child(self, *parts: str) -> Location:
        return self.base.child(*parts)

    @property
    def manifest(self) -> Location:
        return self.base.child("manifest.json")

    @property
    def errors(self) -> Location:
        """Rows that failed, per stage: `errors/<stage>/<block>.parquet`."""
        return self.base.child("errors")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunRef) and (self.root_uri, self.run_id) == (
            other.root_uri, other.run_id)

    def __hash__(self) -> int:
        return hash((self.root_uri, self.run_id))

    def __reduce__(self) -> tuple[Any, ...]:
        # Never ship a resolved filesystem (and its connections) to another process.
        return (RunRef, (self.root_uri, self.run_id, self.storage))

    def __repr__(self) -> str:
        return f"RunRef({self.uri!r})"
