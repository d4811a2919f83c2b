"""Config: strict YAML, dotted-path errors, --set overrides, no secrets in files."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from persona_gen.cli.main import app, main
from persona_gen.config import load_config
from persona_gen.errors import ConfigError

runner = CliRunner()


def _write(tmp_path, data) -> str:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_valid_file_and_overrides(tmp_path):
    path = _write(tmp_path, {"run": {"seed": 3, "output": "s3://b/runs"}, "census": {"n": 10}})
    cfg = load_config(path, ["run.seed=9", "pipeline.batch_size=16", "census.states=[TX, MA]"])
    assert cfg.run.seed == 9 and cfg.run.output == "s3://b/runs"
    assert cfg.pipeline.batch_size == 16 and cfg.census.states == ["TX", "MA"]
    assert cfg.census.n == 10


def test_misspelt_key_names_the_dotted_path_and_file(tmp_path):
    path = _write(tmp_path, {"pipeline": {"bacth_size": 8}})
    with pytest.raises(ConfigError) as ex:
        load_config(path)
    msg = str(ex.value)
    assert path in msg and "unknown key 'pipeline.bacth_size'" in msg and "\n" not in msg


def test_misspelt_override_is_rejected_like_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key 'run\.sed'"):
        load_config(_write(tmp_path, {}), ["run.sed=1"])


def test_wrong_type_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"'census\.n': Input should be a valid integer"):
        load_config(_write(tmp_path, {"census": {"n": "many"}}))


def test_secrets_in_yaml_are_refused(tmp_path):
    path = _write(tmp_path, {"storage": {"secret_key": "abc"}})
    with pytest.raises(ConfigError, match="never read from config files"):
        load_config(path)


def test_cli_misspelt_key_exits_nonzero_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    path = _write(tmp_path, {"run": {"output": str(out), "seeed": 1}})
    with pytest.raises(SystemExit) as ex:
        main(["storage", "check", str(out), "--config", path])
    assert ex.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "run.seeed" in err and "\n" not in err
    assert not out.exists()


def test_config_show_masks_secrets(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEKEY123")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "very-secret-value-42")
    res = runner.invoke(app, ["config", "show", "--set", "run.seed=5"])
    assert res.exit_code == 0, res.output
    assert "seed: 5" in res.output
    assert "very-secret-value-42" not in res.output and "AKIAEXAMPLEKEY123" not in res.output
    assert "access key: AK***" in res.output
