"""The command line's conventions (persona_gen/cli/conventions.py): help for every command
at 80 columns without a truncation mark or a Python type as a placeholder, old spellings as
hidden aliases with one deprecation line, the exit codes, and `--json` parsed for cost,
doctor, config show and storage check (run, status and export: tests/test_export.py's
test_json_results, on that file's echo run)."""

from __future__ import annotations

import json
import re
import socket
import stat
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from persona_gen.cli.conventions import walk
from persona_gen.cli.main import app, main
from persona_gen.errors import EXIT_BAD_INPUT, EXIT_USAGE

ROOT = Path(__file__).resolve().parents[1]
PY_TYPE = re.compile(r"<(?:str|int|float|bool|path|file|text|list\[[^>]*\]|[a-z]+ range|"
                     r"datetime|uuid)>|\b(?:INTEGER|FLOAT|BOOLEAN)\b|\bRANGE\b")


def commands() -> list[tuple[str, ...]]:
    return [path for path, _ in walk(typer.main.get_command(app))]


def render_help(path: tuple[str, ...], width: int = 80) -> str:
    res = CliRunner().invoke(app, [*path, "--help"], terminal_width=width)
    assert res.exit_code == 0, (path, res.output)
    return res.output


def test_every_command_is_covered() -> None:
    found = commands()
    assert len(found) >= 30, found
    for path in [("cost",), ("doctor",), ("run",), ("export",), ("census", "sample"),
                 ("bench", "run")]:
        assert path in found
    assert ("plan-cost",) not in found  # hidden alias


@pytest.mark.parametrize("path", commands(), ids=lambda p: " ".join(p) or "persona-gen")
def test_help_at_80_columns_is_whole_and_click_style(path: tuple[str, ...]) -> None:
    text = render_help(path)
    assert "…" not in text, text
    bad = PY_TYPE.findall(text)
    assert not bad, f"Python type names as placeholders: {bad}\n{text}"
    # click's short help cuts a long first sentence with "..."; ours gives it whole.
    body = [ln for ln in text.splitlines()[1:] if ln.rstrip().endswith("...")]
    assert not body, body
    # Wrapped at the width (a single word longer than the width may stand alone).
    long = [ln for ln in text.splitlines() if len(ln) > 80 and " " in ln.strip()]
    assert not long, long


def test_help_width_follows_the_terminal_and_is_100_off_a_tty(monkeypatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    from persona_gen.cli.conventions import HELP_WIDTH, help_width

    assert help_width() == HELP_WIDTH == 100  # pytest's stdout is not a terminal
    monkeypatch.setenv("COLUMNS", "132")
    assert help_width() == 132
    wide = CliRunner().invoke(app, ["export", "--help"]).output
    assert max(len(ln) for ln in wide.splitlines()) > 100


def test_choices_and_documented_lists_in_help() -> None:
    run = render_help(("run",))
    assert "--until [personas|prompts|plan|pairs]" in run
    assert "--only [personas|prompts|plan|pairs]" in run
    export = render_help(("export",))
    assert "[paper|trl-dpo|trl-dpo-only]" in export and "[system|user|none]" in export
    cost = " ".join(render_help(("cost",)).split())
    from persona_gen.cost.estimate import TokenAssumptions

    for key in TokenAssumptions.model_fields:
        assert key in cost.replace("- ", "-")


def test_phase_choices_are_the_recipes_phases() -> None:
    from typing import get_args

    from persona_gen.cli.run_cmd import Phase
    from persona_gen.run.recipe import PHASES

    assert get_args(Phase) == PHASES


def test_every_run_command_takes_run_and_output() -> None:
    """--run OUT/ID on every command that reads or writes a run; -o is no longer shown."""
    root = typer.main.get_command(app)
    runs = [("run",), ("status",), ("export",), ("plan",), ("personas", "build"),
            ("prompts", "build"), ("bench", "run"), ("bench", "report"),
            ("bench", "export-sheets"), ("bench", "roleplay"), ("bench", "import-sheets")]
    for path, cmd in walk(root):
        opts = {o for p in cmd.params if not p.hidden for o in getattr(p, "opts", [])}
        if path in runs:
            assert {"--run", "--output", "--run-id"} <= opts, (path, opts)
        assert "-o" not in opts and "--out" not in opts, (path, opts)


def _main(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        main(list(argv))
    cap = capsys.readouterr()
    return int(done.value.code or 0), cap.out, cap.err


def test_old_spellings_work_with_one_deprecation_line(tmp_path, capsys) -> None:
    code, out, err = _main(capsys, "plan", "--personas", "3", "--prompts", "5", "--out",
                           str(tmp_path / "p"))
    assert code == 0 and (tmp_path / "p" / "plan.parquet").is_file()
    assert err.splitlines() == ["warning: '--out' is deprecated; use '--to'"], err
    code, out, err = _main(capsys, "plan-cost", "--cluster", "1xL4", "--json")
    assert code == 0 and json.loads(out)["calls"] > 0
    assert err.splitlines() == ["warning: 'plan-cost' is deprecated; use 'cost'"], err
    code, out, err = _main(capsys, "status", "-o", str(tmp_path), "--run-id", "nope")
    assert code == EXIT_BAD_INPUT
    assert err.splitlines()[0] == "warning: '-o' is deprecated; use '--output'", err
    assert err.splitlines()[1].startswith("error: ") and "nope" in err


def test_old_and_new_spelling_together_is_a_usage_error(tmp_path, capsys) -> None:
    code, _, err = _main(capsys, "plan", "--personas", "3", "--prompts", "5", "--out",
                         str(tmp_path / "a"), "--to", str(tmp_path / "b"))
    assert code == EXIT_USAGE == 2 and "not both" in err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_usage_errors_exit_2_and_bad_input_65(tmp_path, capsys) -> None:
    assert _main(capsys, "run", "--no-such-option")[0] == 2
    assert _main(capsys, "run", "--until", "everything")[0] == 2
    assert _main(capsys, "no-such-command")[0] == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("run: {log_level: LOUD}\n")
    code, out, err = _main(capsys, "config", "show", "--config", str(bad))
    assert code == EXIT_BAD_INPUT == 65 and out == ""
    assert [ln for ln in err.splitlines() if ln.startswith("error:")] == err.splitlines()


def test_readme_exit_code_table_matches_errors() -> None:
    from persona_gen import errors

    table = dict(re.findall(r"^\| (\d+) \| ([^|]+)\|", (ROOT / "README.md").read_text(), re.M))
    codes = {str(v) for k, v in vars(errors).items() if k.startswith("EXIT_")}
    assert table.keys() == codes == {"0", "1", "2", "3", "4", "5", "65", "130"}, table
    assert table["2"].startswith("usage") and table["65"].startswith("bad input")
    assert table["5"].startswith("capacity lost")
    assert (errors.EXIT_USAGE, errors.EXIT_BAD_INPUT, errors.EXIT_FAILED_ROWS,
            errors.EXIT_INFRASTRUCTURE, errors.EXIT_CAPACITY,
            errors.EXIT_INTERRUPTED) == (2, 65, 3, 4, 5, 130)
    assert "65" in (ROOT / "CHANGELOG.md").read_text()


# ---- --json ------------------------------------------------------------------------------

def test_cost_json(capsys) -> None:
    code, out, err = _main(capsys, "cost", "--config",
                           str(ROOT / "jobs/configs/paper_8xh100.yaml"), "--cluster", "8xH100",
                           "--json")
    plan = json.loads(out)
    assert code == 0 and plan["calls"] > 300_000 and plan["gpu_hours"] > 0
    assert "deprecated" not in err  # the new name warns of nothing


def test_doctor_json_and_text(capsys) -> None:
    code, out, _ = _main(capsys, "doctor", "--json")
    report = json.loads(out)
    names = [c["name"] for c in report["checks"]]
    for name in ("platform", "cpu", "gpu", "ray", "storage s3://", "storage gs://",
                 "storage az://", "ray cluster", "ray start", "models"):
        assert name in names, names
    assert all(c["status"] in ("ok", "warn", "fail") for c in report["checks"])
    assert all(c["fix"] for c in report["checks"] if c["status"] != "ok")
    assert code == (0 if report["ok"] else EXIT_BAD_INPUT)
    code, out, _ = _main(capsys, "doctor")
    assert out.splitlines()[0].split()[0] in ("ok", "warn", "fail")


def test_config_show_and_storage_check_json(tmp_path, capsys) -> None:
    code, out, _ = _main(capsys, "config", "show", "--json", "--set", "run.seed=7")
    assert code == 0 and json.loads(out)["config"]["run"]["seed"] == 7
    code, out, _ = _main(capsys, "storage", "check", str(tmp_path), "--json")
    report = json.loads(out)
    assert code == 0 and report["ok"] and report["steps"]


# ---- doctor's checks on this machine's real parts ---------------------------------------

def test_doctor_sees_a_live_and_a_stale_ray_start_record(tmp_path, monkeypatch) -> None:
    from persona_gen.run.doctor import check_ray

    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert [c.status for c in check_ray()] == ["ok", "ok"]
    (tmp_path / "ray").mkdir()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        (tmp_path / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{port}\n")
        live = check_ray()[1]
        monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
        assert check_ray()[0].status == "ok"
    assert live.status == "warn" and "runs on this machine" in live.detail
    stale = check_ray()
    assert stale[0].status == "fail" and "does not answer" in stale[0].detail
    assert stale[1].status == "warn" and "stale" in stale[1].detail and stale[1].fix


def test_doctor_reads_nvidia_smi(tmp_path) -> None:
    """nvidia-smi's output as a driver prints it (recorded from a 550 driver on H100s),
    served by a script, since this machine has no GPU."""
    from persona_gen.run.doctor import gpus

    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\n"
                   "if [ \"$1\" = \"\" ]; then echo '| NVIDIA-SMI 550.54.15   Driver Version: "
                   "550.54.15   CUDA Version: 12.4 |'; exit 0; fi\n"
                   "printf 'NVIDIA H100 80GB HBM3, 81559, 550.54.15\\n"
                   "NVIDIA H100 80GB HBM3, 81559, 550.54.15\\n'\n")
    smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    found, cuda = gpus(str(smi))
    assert cuda == "12.4" and len(found) == 2
    assert found[0].name == "NVIDIA H100 80GB HBM3" and found[0].memory_mib == 81559
    assert found[0].driver == "550.54.15"


def test_doctor_package_pins(tmp_path) -> None:
    from persona_gen.run.doctor import check_package, installed, pins

    ray = installed("ray")
    assert ray is not None
    assert check_package("ray", {"ray": ray}, {"ray": ">=2.60,<3"}).status == "ok"
    assert check_package("ray", {"ray": "0.0.1"}, {}).status == "warn"
    assert check_package("ray", {}, {"ray": "<1"}).status == "fail"
    assert pins()["ray"] and pins()["vllm"]


def test_shell_completion_is_on() -> None:
    """bash completion through click's protocol: commands and an option's choices."""
    import os
    import subprocess
    import sys

    exe = Path(sys.executable).parent / "persona-gen"

    def complete(words: str, cword: int) -> list[str]:
        env = {**os.environ, "_PERSONA_GEN_COMPLETE": "complete_bash", "COMP_WORDS": words,
               "COMP_CWORD": str(cword)}
        done = subprocess.run([str(exe)], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    assert "run" in complete("persona-gen ru", 1)
    assert complete("persona-gen run --until p", 3) == ["personas", "prompts", "plan", "pairs"]
    help_text = render_help(())
    assert "--install-completion" in help_text


def test_plan_and_census_sample_json(tmp_path, census_dir, capsys) -> None:
    code, out, _ = _main(capsys, "plan", "--personas", "30", "--prompts", "100", "--to",
                         str(tmp_path / "plan"), "--json")
    plan = json.loads(out)
    assert code == 0 and plan["personas"] == 30 and plan["pairs"] > 0
    assert plan["pairs"] == plan["train_pairs"] + plan["test_pairs_seen"] + \
        plan["test_pairs_heldout"]
    import pyarrow.parquet as pq

    assert pq.read_table(tmp_path / "plan" / "plan.parquet").num_rows == plan["pairs"]
    code, out, _ = _main(capsys, "census", "sample", "--source",
                         str(census_dir / "nist-acs-2019" / "tx2019.csv"), "--n", "12",
                         "--seed", "3", "--to", str(tmp_path / "people.parquet"), "--json")
    sample = json.loads(out)
    assert code == 0 and sample["people"] == 12 and sample["seed"] == 3
    assert pq.read_table(tmp_path / "people.parquet").num_rows == 12
