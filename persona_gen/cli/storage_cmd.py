"""`persona-gen storage ...`"""

from __future__ import annotations

from typing import Annotated

import typer

from persona_gen.cli.conventions import JsonOpt, echo_json
from persona_gen.cli.options import ConfigOpt, SetOpt
from persona_gen.run.config import load_config
from persona_gen.storage.check import check

app = typer.Typer(help="Object storage utilities.", no_args_is_help=True)


@app.command("check")
def check_cmd(
    uri: Annotated[str, typer.Argument(help="A path, file://path, s3://, gs:// or az://bucket/prefix.")],
    config: ConfigOpt = None,
    set_: SetOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Write, list, read and delete a probe object at URI; say exactly what failed."""
    cfg = load_config(config, set_ or [])
    report = check(uri, cfg.storage)
    if json_:
        echo_json({"ok": True, "uri": report.uri, "steps": list(report.steps)})
        return
    typer.echo(f"OK {report.uri}: " + ", ".join(report.steps))
