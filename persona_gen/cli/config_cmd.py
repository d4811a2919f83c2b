"""`persona-gen config ...`"""

from __future__ import annotations

import os

import typer
import yaml

from persona_gen.cli.conventions import JsonOpt, echo_json
from persona_gen.cli.options import ConfigOpt, SetOpt
from persona_gen.log import mask
from persona_gen.run.config import load_config

app = typer.Typer(help="Inspect configuration.", no_args_is_help=True)


@app.command("show")
def show(config: ConfigOpt = None, set_: SetOpt = None, json_: JsonOpt = False) -> None:
    """Print the resolved config (file + overrides + defaults) as YAML, secrets masked."""
    cfg = load_config(config, set_ or [])
    if json_:
        echo_json({"config": cfg.model_dump(mode="json"), "storage": {
            "endpoint": cfg.storage.resolved_endpoint(), "region": cfg.storage.resolved_region(),
            "access_key": mask(os.environ.get("AWS_ACCESS_KEY_ID")),
            "secret_key": mask(os.environ.get("AWS_SECRET_ACCESS_KEY"))}})
        return
    typer.echo(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False).rstrip())
    # Where secrets come from, masked: enough to tell which identity a run will use.
    typer.echo("# resolved storage (from the environment):")
    typer.echo(f"#   endpoint: {cfg.storage.resolved_endpoint() or 'AWS default'}")
    typer.echo(f"#   region: {cfg.storage.resolved_region()}")
    typer.echo(f"#   access key: {mask(os.environ.get('AWS_ACCESS_KEY_ID'))}")
    typer.echo(f"#   secret key: {mask(os.environ.get('AWS_SECRET_ACCESS_KEY'))}")
