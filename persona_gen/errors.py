"""Errors a user can act on, and the exit codes a scheduler reads from them.

Every `UserError` renders as one line naming the file/field and what was expected; the
CLI prints it and exits with the error's `exit_code` without a traceback. The codes are
documented in the README ("Exit codes"); keep the two in step.
"""

from __future__ import annotations

import errno
import re

EXIT_OK = 0
EXIT_BUG = 1
"""An unexpected exception: a bug (the traceback is printed)."""
EXIT_USAGE = 2
"""Unknown command or option, bad option value, missing argument: click's usage error."""
EXIT_BAD_INPUT = 65
"""Config, data file, run address, credentials or target: fix the input, then rerun
(sysexits' EX_DATAERR; it was 2 before, see CHANGELOG.md)."""
EXIT_FAILED_ROWS = 3
"""The run committed everything, but a stage's error rows are over
`pipeline.max_error_fraction`."""
EXIT_INFRASTRUCTURE = 4
"""Storage or Ray failed past the retry budget: rerunning the same command resumes."""
EXIT_CAPACITY = 5
"""The cluster lost its engines for good: more node losses than `pipeline.node_loss_budget`,
or no engine alive for `pipeline.capacity_wait_s`. Everything committed is kept:
resubmitting when capacity is back resumes."""
EXIT_INTERRUPTED = 130
"""SIGINT or SIGTERM (`ray job stop`): rerunning resumes."""


class UserError(Exception):
    """A problem with the user's input or environment, reported as one clear line."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, *, source: str | None = None) -> None:
        self.source = source
        super().__init__(f"{source}: {message}" if source else message)


class ConfigError(UserError):
    """A configuration file or override is invalid."""


class StorageError(UserError):
    """Object storage refuses us or lacks what we need (bad URI, credentials, bucket)."""


class DataError(UserError):
    """An input data file (census, prompts, ...) is malformed."""


class InfrastructureError(UserError):
    """Storage or the Ray cluster failed in a way that rerunning may fix."""

    exit_code = EXIT_INFRASTRUCTURE


class CapacityLost(InfrastructureError):
    """Node losses past `pipeline.node_loss_budget`, or no engine for
    `pipeline.capacity_wait_s` (pipeline.fleet)."""

    exit_code = EXIT_CAPACITY


class StorageUnavailable(StorageError, InfrastructureError):
    """Storage stayed unreachable (or kept failing transiently) past `storage.retry_budget_s`."""

    exit_code = EXIT_INFRASTRUCTURE


class PreflightError(UserError):
    """Checks run before anything starts found problems (persona_gen.run.preflight): one
    line each, all of them, not just the first."""

    def __init__(self, problems: list[str], exit_code: int = EXIT_BAD_INPUT) -> None:
        self.problems = problems
        self.exit_code = exit_code
        n = len(problems)
        super().__init__(f"{n} check{'s' if n != 1 else ''} failed before the run started: "
                         + "; ".join(problems))


class FailedRowsError(UserError):
    """Committed error rows of a stage are over `pipeline.max_error_fraction`."""

    exit_code = EXIT_FAILED_ROWS


LOCAL_ERRNOS = frozenset({
    errno.ENOENT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR,
    errno.EEXIST, errno.ENOSPC, errno.EDQUOT, errno.ENAMETOOLONG, errno.ELOOP, errno.ENOTEMPTY,
})
"""OS errors about a local path (missing, no permission, read-only, full, ...): the
environment is wrong, not the code, so they get one line and exit 65 like a bad input."""


def _local_os_error(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in LOCAL_ERRNOS


def exit_code_for(exc: BaseException) -> int | None:
    """The exit code for an exception, looking through Ray's wrappers (a UserError raised in
    a worker reaches the driver inside a RayTaskError); None when it is a bug."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, UserError):
            return cur.exit_code
        if _local_os_error(cur):
            return EXIT_BAD_INPUT
        if isinstance(cur, KeyboardInterrupt):
            return EXIT_INTERRUPTED
        nxt = getattr(cur, "cause", None)  # ray.exceptions.RayTaskError keeps the original here
        cur = nxt if isinstance(nxt, BaseException) else cur.__cause__ or cur.__context__
    if _is_ray_system_error(exc):
        return EXIT_INFRASTRUCTURE
    return None


def _is_ray_system_error(exc: BaseException) -> bool:
    try:
        from ray import exceptions as rex
    except ImportError:
        return False
    system = (rex.RaySystemError, rex.ActorDiedError, rex.ActorUnavailableError,
              rex.NodeDiedError, rex.ObjectLostError, rex.OutOfMemoryError,
              rex.GetTimeoutError, rex.RuntimeEnvSetupError)
    return isinstance(exc, system) and not isinstance(exc, rex.RayTaskError)


def one_line(exc: BaseException) -> str:
    """The innermost UserError's message (through Ray's wrappers), else the exception's
    first line: what the CLI prints and the manifest records as a failure's reason."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, UserError):
            return str(cur)
        if _local_os_error(cur):
            return _os_line(cur)  # type: ignore[arg-type]
        nxt = getattr(cur, "cause", None)
        cur = nxt if isinstance(nxt, BaseException) else cur.__cause__ or cur.__context__
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _os_line(exc: OSError) -> str:
    """`path: reason` as a storage error reads (Python's own errors name the path in
    `filename`; pyarrow's name it in the message)."""
    if exc.filename is not None:
        where = str(exc.filename) + (f" -> {exc.filename2}" if exc.filename2 else "")
        return f"{where}: {exc.strerror or type(exc).__name__}"
    text = re.sub(r"^\[Errno \d+\]\s*", "", str(exc).strip().splitlines()[0] if str(exc).strip() else "")
    return text or f"{type(exc).__name__} (errno {exc.errno})"
