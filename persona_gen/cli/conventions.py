"""The command line's conventions, applied once to the whole command tree.

Commands declare their options plainly; this module makes them read the way click, gh and
kubectl users expect, in one place, so a new command gets the same surface for free:

- placeholders are click-style words (TEXT, PATH, URI, KEY=VALUE, N), never Python types;
- help is plain click help, wrapped (never truncated) at the terminal's width, or at
  HELP_WIDTH columns when stdout is not a terminal (COLUMNS wins over both);
- old spellings of options and commands keep working as hidden aliases that print one
  deprecation line on stderr (DEPRECATED_OPTIONS, DEPRECATED_COMMANDS);
- results as JSON on stdout: `JsonOpt` and `echo_json`.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import shutil
import sys
from typing import Annotated, Any

import typer
from typer import _click as click  # typer 0.2x vendors click: its classes, not click's
from typer.core import TyperGroup

HELP_WIDTH = 100
"""Help width when stdout is not a terminal (a pipe, a file, CI logs)."""

DEPRECATED_OPTIONS: dict[str, str] = {
    # One word for a destination: --to is a file or folder the command writes.
    "--out": "--to",
    # -o is the output format for gh and kubectl users; the runs root is --output.
    "-o": "--output",
    "--quiet": "--no-progress",
    "-q": "--no-progress",
}
"""Old option spelling -> the option it now is; the old one stays as a hidden alias."""

DEPRECATED_COMMANDS: dict[str, str] = {"plan-cost": "cost"}
"""Old command name -> new one (main.py registers the old name as a hidden command)."""

URI_OPTIONS = frozenset({"--output", "--to", "--run", "--sample", "--items", "--personas-file",
                         "--prompts-file", "--source"})
"""Options that take a local path or an object store URI (s3://, gs://, az://)."""
KEY_VALUE_OPTIONS = frozenset({"--set", "--assume"})
SECONDS_OPTIONS = frozenset({"--interval", "--stale-after"})
NAMED_PLACEHOLDERS = {"--cluster": "COUNTxTYPE", "--model": "NAME", "-m": "NAME",
                      "--gpu": "TYPE", "--states": "ST,ST"}

JsonOpt = Annotated[bool, typer.Option(
    "--json", help="Print the result as one JSON object on stdout (logs stay on stderr).")]


def echo_json(value: Any) -> None:
    """A command's result as one line of JSON on stdout."""
    typer.echo(json.dumps(value, separators=(",", ":"), default=str))


def deprecated(old: str, new: str) -> None:
    """The one line an old spelling prints (stderr: stdout carries the result only)."""
    typer.echo(f"warning: '{old}' is deprecated; use '{new}'", err=True)


def help_width() -> int:
    """Columns to wrap help at: COLUMNS, else the terminal's, else HELP_WIDTH."""
    env = os.environ.get("COLUMNS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    if sys.stdout.isatty():
        return shutil.get_terminal_size((HELP_WIDTH, 24)).columns
    return HELP_WIDTH


def placeholder(param: click.core.Parameter) -> str | None:
    """The click-style word for what an option takes, or None to leave it as it is
    (choice lists: the choices are the placeholder)."""
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        return ""
    desc = getattr(param, "type_descriptor", None)
    if desc is not None and desc.is_choice:
        values = [getattr(c, "value", c) for c in desc.choices or ()]
        return "[" + "|".join(str(v) for v in values) + "]"
    names = set(param.opts) | set(getattr(param, "secondary_opts", []))
    if names & KEY_VALUE_OPTIONS:
        return "KEY=VALUE"
    for name in names:
        if name in NAMED_PLACEHOLDERS:
            return NAMED_PLACEHOLDERS[name]
    if names & SECONDS_OPTIONS:
        return "SECONDS"
    if desc is not None and desc.is_path:
        return "PATH"  # a local file or folder
    if names & URI_OPTIONS:
        return "URI"
    if desc is None:
        return "TEXT"
    base = desc.annotation
    if desc.is_list:
        base = getattr(base, "__args__", (str,))[0]
    if base is int:
        return "N"
    if base is float:
        return "NUMBER"
    return "TEXT"


def _alias_option(param: click.core.Option, old: str, new: str) -> click.core.Option:
    """A hidden copy of `param` answering to `old`: its value lands in `param`'s place
    (see _take_aliases) after one deprecation line."""
    alias = copy.copy(param)
    alias.opts, alias.secondary_opts = [old], []
    alias.name = f"{param.name}__{old.lstrip('-')}"
    alias.hidden, alias.required, alias.expose_value = True, False, False
    alias.default = None
    alias.callback = None
    alias.is_eager = False
    alias.alias_of = (param.name, old, new)  # type: ignore[attr-defined]
    return alias


def _take_aliases(command: click.core.Command) -> None:
    """Wrap the command's callback so an alias's value fills its option's parameter."""
    inner = command.callback
    if inner is None or getattr(inner, "takes_aliases", False):
        return
    aliases = [p for p in command.params if hasattr(p, "alias_of")]

    @functools.wraps(inner)
    def callback(**kwargs: Any) -> Any:
        ctx = click.globals.get_current_context()
        for alias in aliases:
            target, old, new = alias.alias_of  # type: ignore[attr-defined]
            if ctx.get_parameter_source(alias.name) is not click.core.ParameterSource.COMMANDLINE:
                continue
            deprecated(old, new)
            if ctx.get_parameter_source(target) is click.core.ParameterSource.COMMANDLINE:
                raise click.exceptions.UsageError(f"give {new} or its old spelling {old}, not both", ctx)
            kwargs[target] = ctx.meta[f"alias:{alias.name}"]
        return inner(**kwargs)

    callback.takes_aliases = True  # type: ignore[attr-defined]
    command.callback = callback


def _keep_value(ctx: click.core.Context, param: click.core.Parameter, value: Any) -> Any:
    ctx.meta[f"alias:{param.name}"] = value
    return value


def _deprecated_command(command: click.core.Command, old: str, new: str) -> None:
    inner = command.callback
    if inner is None or getattr(inner, "warns", False):
        return

    @functools.wraps(inner)
    def callback(**kwargs: Any) -> Any:
        deprecated(old, new)
        return inner(**kwargs)

    callback.warns = True  # type: ignore[attr-defined]
    command.callback = callback


def apply(command: click.core.Command, name: str = "") -> None:
    """The conventions on one command and everything under it."""
    if hasattr(command, "rich_markup_mode"):
        command.rich_markup_mode = None  # plain click help: wraps, never truncates
    params: list[click.core.Parameter] = []
    taken = {o for p in command.params for o in [*getattr(p, "opts", []),
                                                  *getattr(p, "secondary_opts", [])]}
    for param in command.params:
        params.append(param)
        if hasattr(param, "alias_of"):
            continue
        if param.param_type_name == "option":
            for old, new in DEPRECATED_OPTIONS.items():
                if new in taken and new not in param.opts and new not in param.secondary_opts:
                    continue  # another option already is `new`: this one keeps its name
                if old in param.opts or old in param.secondary_opts:
                    if old in param.opts:
                        param.opts.remove(old)
                    else:
                        param.secondary_opts.remove(old)
                    if new not in param.opts and new not in param.secondary_opts:
                        param.opts.insert(0, new)
                    alias = _alias_option(param, old, new)
                    alias.callback = _keep_value
                    params.append(alias)
        if param.param_type_name == "argument":
            # An argument's name is its placeholder (URI, NAME, SHEETS...), without a type.
            param.metavar = param.metavar or (param.name or "ARG").upper()
            param.display_type_rich = lambda ctx: None  # type: ignore[method-assign]
            param._usage_display_name = functools.partial(_usage_name, param)  # type: ignore[attr-defined]
        elif param.metavar is None or param.metavar.startswith("<"):
            word = placeholder(param)
            if word is not None:
                param.metavar = word
    command.params = params
    if any(hasattr(p, "alias_of") for p in params):
        _take_aliases(command)
    if command.help and not command.short_help:
        # The first sentence, whole: click would cut a long one with "...".
        first = command.help.strip().split("\n")[0]
        command.short_help = first.split(". ")[0].rstrip(".") + "."
    if name in DEPRECATED_COMMANDS:
        _deprecated_command(command, name, DEPRECATED_COMMANDS[name])
    for sub_name, sub in getattr(command, "commands", {}).items():
        apply(sub, sub_name)


def _usage_name(param: click.core.Parameter) -> str:
    """click's usage form of an argument: NAME, [NAME] when optional, ... when repeated."""
    name = str(param.metavar)
    if not param.required:
        name = f"[{name}]"
    return name + ("..." if param.nargs != 1 else "")


class Root(TyperGroup):
    """The top-level group: applies the conventions to the tree once it is built, and
    sets the help width for every context under it."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        apply(self)

    def make_context(self, info_name: str | None, args: list[str],
                     parent: click.core.Context | None = None, **extra: Any) -> click.core.Context:
        if parent is None:
            extra.setdefault("terminal_width", help_width())
            extra.setdefault("max_content_width", extra["terminal_width"])
        return super().make_context(info_name, args, parent=parent, **extra)


def walk(command: click.core.Command, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...],
                                                                          click.core.Command]]:
    """Every visible command under `command` with its path (for tests and docs)."""
    found = [(path, command)]
    for sub_name, sub in getattr(command, "commands", {}).items():
        if not sub.hidden:
            found += walk(sub, (*path, sub_name))
    return found

