"""Where an export goes, and how it gets there without ever being seen half-written.

Everything is staged in a local folder first. A local target is then one rename (the
staging folder sits beside it, on the same filesystem); an object-store target (s3://,
gs://, az://) is uploaded file by file, each visible only once whole, data first and the
README card last, so a reader that finds the card finds every file it names.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from persona_gen.errors import StorageError
from persona_gen.log import get_logger
from persona_gen.storage import objects
from persona_gen.storage.uri import Location

CARD = "README.md"
RUN_CONFIG = "run_config.yaml"
"""The run's resolved configuration, published beside the data (the card links it)."""


@dataclass(frozen=True)
class Target:
    loc: Location
    overwrite: bool = False

    def check(self) -> None:
        """Refuse to replace an existing export unless asked to; fail before any work."""
        if self.loc.is_object_store:
            taken = bool(objects.list_files(self.loc))
        else:
            path = Path(self.loc.path)
            if path.exists() and not path.is_dir():
                raise StorageError("the target is a file; give a folder", source=self.loc.uri)
            taken = path.is_dir() and any(path.iterdir())
        if taken and not self.overwrite:
            raise StorageError("the target folder is not empty; pass --overwrite to replace "
                               "it", source=self.loc.uri)

    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        """A fresh local folder for the export; removed on failure and after publishing."""
        made = None
        if self.loc.is_object_store:
            stage = Path(tempfile.mkdtemp(prefix="persona-gen-export-"))
        else:
            final = Path(self.loc.path)
            made = next((p for p in reversed(final.parents) if not p.exists()), None)
            final.parent.mkdir(parents=True, exist_ok=True)
            stage = final.parent / f".{final.name}.export-{uuid.uuid4().hex[:8]}"
            stage.mkdir()
        try:
            yield stage
        except BaseException:
            # A failed export leaves no trace, not even the folders made to hold it.
            if not self.loc.is_object_store and made is not None:
                shutil.rmtree(made, ignore_errors=True)
            raise
        finally:
            shutil.rmtree(stage, ignore_errors=True)

    def publish(self, stage: Path) -> None:
        if self.loc.is_object_store:
            self._upload(stage)
        else:
            self._move(stage)

    def _move(self, stage: Path) -> None:
        final = Path(self.loc.path)
        old = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
        if final.exists():
            final.rename(old)
        stage.rename(final)
        shutil.rmtree(old, ignore_errors=True)

    def _upload(self, stage: Path) -> None:
        if self.overwrite:
            # The old card goes first, so no reader takes the old files for a finished export.
            for path in sorted(objects.list_files(self.loc), key=lambda p: not p.endswith(CARD)):
                self.loc.fs.delete_file(path)
        files = sorted(p for p in stage.rglob("*") if p.is_file())
        ordered = [p for p in files if p.name != CARD] + [p for p in files if p.name == CARD]
        for path in ordered:
            rel = path.relative_to(stage).as_posix()
            objects.upload_file(path, self.loc.child(rel))
            get_logger(stage="export").debug("uploaded", file=self.loc.child(rel).uri)
