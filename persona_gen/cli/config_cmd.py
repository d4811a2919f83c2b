"""`persona-gen config ...`"""

from __future__ import annotations

import typer
import yaml

from persona_gen.cli.options import ConfigOpt, SetOpt
from persona_gen.config import load_config

app = typer.Typer(help="Inspect configuration.", no_args_is_help=True)


@app.command("show")
def show(config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """Print the resolved config (file + overrides + defaults) as YAML, secrets masked."""
    cfg = load_config(config, set_ or [])
    typer.echo(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False).rstrip())
