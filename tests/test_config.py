"""Config: strict YAML, dotted-path errors, --set overrides, no secrets in files."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from persona_gen.cli.main import app, main
from persona_gen.errors import ConfigError
from persona_gen.run.config import load_config

runner = CliRunner()


def _write(tmp_path, data) -> str:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_valid_file_and_overrides(tmp_path):
    path = _write(tmp_path, {"run": {"seed": 3, "output": "s3://b/runs"}, "personas": {"n": 10}})
    cfg = load_config(path, ["run.seed=9", "pipeline.batch_size=16", "census.states=[TX, MA]"])
    assert cfg.run.seed == 9 and cfg.run.output == "s3://b/runs"
    assert cfg.pipeline.batch_size == 16 and cfg.census.states == ["TX", "MA"]
    assert cfg.personas.n == 10


def test_census_n_is_read_as_personas_n(tmp_path):
    """`census.n` (before personas.n was the number kept) still loads, as personas.n; set
    to another value beside personas.n, it is refused naming both."""
    cfg = load_config(_write(tmp_path, {"census": {"n": 12}}))
    assert cfg.personas.n == 12 and "n" not in type(cfg.census).model_fields
    with pytest.raises(ConfigError, match=r"'census\.n' \(deprecated\) and 'personas\.n'"):
        load_config(_write(tmp_path, {"census": {"n": 12}, "personas": {"n": 10}}))


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
    with pytest.raises(ConfigError, match=r"'personas\.n': Input should be a valid integer"):
        load_config(_write(tmp_path, {"personas": {"n": "many"}}))


def test_secrets_in_yaml_are_refused(tmp_path):
    path = _write(tmp_path, {"storage": {"secret_key": "abc"}})
    with pytest.raises(ConfigError, match="never read from config files"):
        load_config(path)


def test_cli_misspelt_key_exits_nonzero_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    path = _write(tmp_path, {"run": {"output": str(out), "seeed": 1}})
    with pytest.raises(SystemExit) as ex:
        main(["storage", "check", str(out), "--config", path])
    assert ex.value.code == 65
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


# ---- stages: typed settings, deprecated flat keys, templates ----------------------------

OLD_KEYS = {
    "feedback": {"model": "gen", "judge_model": "judge", "max_tokens": 90,
                 "critique_max_tokens": 64, "critique_retry_max_tokens": 0, "verify": True,
                 "temperature": 0.5},
    "personas": {"enrich_model": "writer", "judge_model": "checker", "judge_max_tokens": 50,
                 "enrich_field_max_chars": 70, "model_consistency_check": False,
                 "batch_size": 8},
    "prompts": {"classifier_model": None},
    "bench": {"judge_model": "bj", "max_tokens_by_mode": {"cot": 40}},
}


def test_old_flat_keys_load_into_stages_with_one_deprecation_line_each(tmp_path, capsys):
    from persona_gen.log import configure
    from persona_gen.run import recipe as R

    configure(json=True, stream=None)
    cfg = load_config(_write(tmp_path, OLD_KEYS))
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "deprecated_key" in ln]
    assert len(lines) == 16, err  # one per old key
    assert any('"key": "feedback.critique_max_tokens"' in ln
               and '"use": "stages.critique.max_tokens"' in ln for ln in lines)
    s = {n: R.settings(cfg, n) for n in ("original", "critique", "revision", "verify",
                                         "enrich", "consistency", "controversy")}
    assert s["critique"].max_tokens == 64 and s["critique"].retry_limit() is None
    assert s["original"].max_tokens == 90 and s["revision"].max_tokens == 90  # the fallback
    assert s["original"].temperature == 0.5 and s["verify"].temperature == 0.0
    assert {s[n].model for n in ("original", "critique", "revision")} == {"gen"}
    assert s["verify"].model == "judge" and s["enrich"].model == "writer"
    assert s["consistency"].model == "checker" and s["consistency"].max_tokens == 50
    assert not s["consistency"].enabled and not s["controversy"].enabled
    assert R.settings(cfg, "enrich").field_max_chars == 70  # type: ignore[attr-defined]
    assert R.settings(cfg, "bench_judge").model == "bj"
    assert R.build(cfg, "bench_answer").max_tokens_for("cot") == 40


def test_an_old_key_and_its_new_key_disagreeing_is_one_line(tmp_path):
    path = _write(tmp_path, {"feedback": {"critique_max_tokens": 64},
                             "stages": {"critique": {"max_tokens": 32}}})
    with pytest.raises(ConfigError) as ex:
        load_config(path)
    msg = str(ex.value)
    assert path in msg and "feedback.critique_max_tokens" in msg and "\n" not in msg


def test_stage_settings_are_typed_and_named_by_stage(tmp_path):
    with pytest.raises(ConfigError, match=r"'stages\.critique\.max_tokens': Input should be"):
        load_config(_write(tmp_path, {"stages": {"critique": {"max_tokens": "lots"}}}))
    with pytest.raises(ConfigError, match=r"unknown key 'stages\.critiqe'"):
        load_config(_write(tmp_path, {"stages": {"critiqe": {"max_tokens": 5}}}))
    with pytest.raises(ConfigError, match=r"stages\.defaults.*template cannot be shared"):
        load_config(_write(tmp_path, {"stages": {"defaults": {"template": "x.jinja"}}}))


def test_a_template_with_an_unknown_variable_is_one_config_line(tmp_path):
    bad = tmp_path / "critique.jinja"
    bad.write_text("{% block user %}Hi {{ persona_name }}: {{ original }}{% endblock %}")
    path = _write(tmp_path, {"stages": {"critique": {"template": str(bad)}}})
    with pytest.raises(ConfigError) as ex:
        load_config(path)
    msg = str(ex.value)
    assert "stages.critique.template" in msg and "persona_name" in msg and "\n" not in msg
    assert "persona, instruction, original" in msg  # what the stage offers


def test_a_template_file_and_inline_text_both_shape_the_prompt(tmp_path):
    import pyarrow as pa

    from persona_gen.run import recipe as R

    mine = tmp_path / "critique.jinja"
    mine.write_text("{% block system %}You are: {{ persona }}{% endblock %}\n"
                    "{% block user %}Critique '{{ original }}' for: {{ instruction }}{% endblock %}\n")
    cfg = load_config(_write(tmp_path, {"stages": {
        "critique": {"template": str(mine)},
        "original": {"template": {"user": "Q: {{ text }}"}}}}))
    row = pa.table({"pair_id": ["p"], "persona": ["age: 3"], "instruction": ["Why?"],
                    "original": ["Because."]})
    msgs = R.build(cfg, "critique").requests(row)[0].messages
    assert [(m.role, m.content) for m in msgs] == [
        ("system", "You are: age: 3"), ("user", "Critique 'Because.' for: Why?")]
    q = R.build(cfg, "original").requests(pa.table({"prompt_id": ["q"], "text": ["Why?"]}))
    assert [(m.role, m.content) for m in q[0].messages] == [("user", "Q: Why?")]


def test_every_shipped_template_uses_only_its_stages_variables():
    from persona_gen.pipeline.template import shipped
    from persona_gen.run import recipe as R

    for s in R.all_stages():
        tpl = R.build(load_config(None), s.name).prompt()  # type: ignore[attr-defined]
        assert tpl.source.endswith(".jinja"), s.name
        tpl.check(s.kind.variables, s.name)
        assert tpl.variables() == set(s.kind.variables), s.name
    shipped("controversy-debatable").check(("text",), "controversy")


def test_the_demo_in_flat_keys_builds_exactly_the_demos_stages():
    """The demo's config as written before `stages` existed: every stage resolves and builds
    the same as from today's cpu_demo.yaml (same settings, same prompts, same seeds, so the
    same blocks and the same resumable run)."""
    from pathlib import Path

    from persona_gen.run import recipe as R
    from persona_gen.run.manifest import produced_by

    root = Path(__file__).resolve().parents[1]
    old = load_config(root / "tests" / "data" / "cpu_demo_flat_keys.yaml")
    new = load_config(root / "jobs" / "configs" / "cpu_demo.yaml")
    assert R.recipe(old).names == R.recipe(new).names
    for s in R.all_stages():
        assert s.settings(old) == s.settings(new), s.name
        assert repr(s.build(old)) == repr(s.build(new)), s.name
    assert produced_by(old) == produced_by(new)
    assert old.model_dump(exclude={"stages"}) == new.model_dump(exclude={"stages"})
