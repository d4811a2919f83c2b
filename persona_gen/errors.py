"""Errors a user can act on.

Every `UserError` renders as one line naming the file/field and what was expected; the
CLI prints it and exits non-zero without a traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input or environment, reported as one clear line."""

    exit_code = 2

    def __init__(self, message: str, *, source: str | None = None) -> None:
        self.source = source
        super().__init__(f"{source}: {message}" if source else message)


class ConfigError(UserError):
    """A configuration file or override is invalid."""


class StorageError(UserError):
    """Object storage is unreachable, refuses us, or lacks what we need."""


class DataError(UserError):
    """An input data file (census, prompts, ...) is malformed."""
