"""Where a run's parts live: `<root>/<run_id>/{manifest.json, personas/, ...}`."""

from __future__ import annotations

import re
from dataclasses import dataclass

from persona_gen.errors import UserError
from persona_gen.storage.settings import S3Settings
from persona_gen.storage.uri import Location, resolve

PARTS = ("personas", "prompts", "plan", "feedback", "errors", "bench")
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_run_id(run_id: str) -> str:
    if not _RUN_ID.match(run_id):
        raise UserError(
            f"run id '{run_id}' must be 1-128 letters, digits, '.', '_' or '-'", source="run_id"
        )
    return run_id


@dataclass(frozen=True)
class RunLayout:
    root: Location
    run_id: str

    @classmethod
    def at(cls, root_uri: str, run_id: str, s3: S3Settings | None = None) -> RunLayout:
        return cls(resolve(root_uri, s3), check_run_id(run_id))

    @property
    def base(self) -> Location:
        return self.root.child(self.run_id)

    @property
    def manifest(self) -> Location:
        return self.base.child("manifest.json")

    def part(self, name: str) -> Location:
        if name not in PARTS:
            raise ValueError(f"unknown run part {name!r}; expected one of {PARTS}")
        return self.base.child(name)

    @property
    def personas(self) -> Location:
        return self.part("personas")

    @property
    def prompts(self) -> Location:
        return self.part("prompts")

    @property
    def plan(self) -> Location:
        return self.part("plan")

    @property
    def feedback(self) -> Location:
        return self.part("feedback")

    @property
    def errors(self) -> Location:
        return self.part("errors")

    @property
    def bench(self) -> Location:
        return self.part("bench")
