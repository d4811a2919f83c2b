"""Every code block in README.md and docs/ is checked against the code, so the docs cannot
drift from it:

- shell blocks: every `persona-gen ...` command (also after `ray job submit ... --` and in
  the job scripts, which pass their arguments to a fixed persona-gen command) parses with
  the real CLI without running, and each `--config` it names loads with its `--set`s;
  `python -c` code compiles, `python -m` modules and `python FILE` scripts exist, `make`
  targets exist, `pip install -e ".[extra]"` extras exist, and repository scripts exist;
- any other tool (aws, kubectl, terraform, docker, ray, hf, ...) may appear only in a
  block marked `external` after its language (```` ```bash external ````); `gpu` marks
  a block that needs a GPU (its commands are still parsed);
- yaml blocks load as a run config (`load_config`) or, for a model file's block, validate
  as that part of a model file; json blocks parse; every block names its language.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.test_cluster_guide import SHELL_BREAKS, cli_invocations, parse

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```\s*$", re.M | re.S)
SHELLS = {"bash", "sh", "shell", "console"}
UNCHECKED = {"text", "bibtex", "jinja"}  # output shown, a citation, a template
ANNOTATIONS = {"external", "gpu"}
BUILTINS = {"cd", "export", "source", "sleep", "echo", "wait"}


def blocks(path: Path) -> list[tuple[str, set[str], str, int]]:
    """(language, annotations, body, line) of every fenced block."""
    text = path.read_text(encoding="utf-8")
    out = []
    for m in FENCE.finditer(text):
        words = m.group(1).split()
        lang = words[0] if words else ""
        out.append((lang, set(words[1:]), m.group(2), text[:m.start()].count("\n") + 1))
    return out


def all_blocks() -> list[tuple[str, str, set[str], str]]:
    found = []
    for path in DOCS:
        for lang, notes, body, line in blocks(path):
            found.append((f"{path.relative_to(ROOT)}:{line}", lang, notes, body))
    return found


def shell_commands(body: str) -> list[list[str]]:
    """Each simple command of a shell block: continuations joined, comments dropped, split
    at shell operators, redirections and leading VAR=value assignments removed."""
    out = []
    for line in re.sub(r"\\\n\s*", " ", body).splitlines():
        line = re.sub(r"(^|\s)#.*", "", line).strip()
        cur: list[str] = []
        skip = False
        for w in [*shlex.split(line), ";"]:
            if skip:
                skip = False
            elif w in (">", ">>", "2>", "<"):
                skip = True  # the next word is the redirection's file
            elif w.startswith((">", "2>")):
                continue
            elif w in SHELL_BREAKS:
                while cur and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=\S*", cur[0]):
                    cur.pop(0)
                if cur:
                    out.append(cur)
                cur = []
            else:
                cur.append(w)
    return out


def makefile_targets() -> set[str]:
    return set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))


def extras() -> set[str]:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return set(meta["project"].get("optional-dependencies", {}))


def check_local_command(words: list[str]) -> str | None:
    """None when this command is checked here (or needs no check); else the tool's name,
    which only an `external` block may use."""
    import importlib.util

    tool = words[0].removeprefix(".venv/bin/")
    if tool == "persona-gen" or tool in BUILTINS:
        return None  # persona-gen: parsed by cli_invocations below
    if tool in ("python", "python3"):
        if words[1] == "-c":
            compile(words[2], "<doc>", "exec")
        elif words[1] == "-m":
            assert importlib.util.find_spec(words[2]) is not None, f"no module {words[2]}"
        else:
            assert (ROOT / words[1]).is_file(), f"no script {words[1]}"
        return None
    if tool == "make":
        targets = [w for w in words[1:] if not w.startswith("-") and "=" not in w]
        missing = set(targets) - makefile_targets()
        assert not missing, f"no Makefile target {missing}"
        return None
    if tool == "pip" and words[1:3] == ["install", "-e"]:
        m = re.fullmatch(r"\.\[([\w,-]+)\]", words[3])
        assert m and set(m.group(1).split(",")) <= extras(), words
        return None
    if "/" in tool and (ROOT / tool).is_file():
        return tool if (ROOT / tool).suffix != ".py" else None
    return tool


def config_loads(argv: list[str]) -> None:
    """A `--config FILE` in a shown command loads, with the command's `--set`s."""
    from persona_gen.run.config import load_config

    if "--config" not in argv:
        return
    path = ROOT / argv[argv.index("--config") + 1]
    sets = [argv[i + 1] for i, w in enumerate(argv) if w == "--set"]
    load_config(path, sets)


def check_yaml(body: str, where: str) -> None:
    from pydantic import TypeAdapter

    from persona_gen.engines.registry import ModelSpec
    from persona_gen.run.config import RunConfig, load_config

    data = yaml.safe_load(body)
    assert isinstance(data, dict), f"{where}: a yaml block is a mapping"
    if set(data) <= set(RunConfig.model_fields):
        import os
        import shutil
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            file = Path(tmp) / "snippet.yaml"
            file.write_text(body)
            # A template the snippet names is the user's edited copy of the shipped one:
            # put the shipped text where it says (paths are relative to the working folder).
            for stage, settings in (data.get("stages") or {}).items():
                if isinstance(settings, dict) and settings.get("template"):
                    dest = Path(tmp) / settings["template"]
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy(ROOT / "persona_gen/templates" / f"{stage}.jinja", dest)
            cwd = Path.cwd()
            os.chdir(tmp)
            try:
                load_config(file, [])
            finally:
                os.chdir(cwd)
        return
    if set(data) <= set(ModelSpec.model_fields):
        for key, value in data.items():
            TypeAdapter(ModelSpec.model_fields[key].annotation).validate_python(value)
        return
    raise AssertionError(f"{where}: yaml that is neither a run config nor a model file's part")


BLOCKS = all_blocks()


def test_the_docs_have_blocks_to_check() -> None:
    assert len(BLOCKS) >= 50
    shells = [b for b in BLOCKS if b[1] in SHELLS]
    assert sum(len(cli_invocations(f"```bash\n{b[3]}```")) for b in shells) >= 30


@pytest.mark.parametrize(("where", "lang", "notes", "body"), BLOCKS, ids=[b[0] for b in BLOCKS])
def test_block(where: str, lang: str, notes: set[str], body: str) -> None:
    assert lang, f"{where}: name the block's language (```bash, ```yaml, ```text, ...)"
    assert notes <= ANNOTATIONS, f"{where}: unknown annotation {notes - ANNOTATIONS}"
    if lang in SHELLS:
        foreign = {t for c in shell_commands(body) if (t := check_local_command(c))}
        assert not foreign or "external" in notes, (
            f"{where}: {sorted(foreign)} cannot run here: mark the block ```{lang} external")
        local = re.sub(r"(^|\s)\.venv/bin/persona-gen\b", r"\1persona-gen", body)
        for argv in cli_invocations(f"```{lang}\n{local}```"):
            parse(argv)
            config_loads(argv)
    elif lang == "yaml":
        check_yaml(body, where)
    elif lang == "json":
        import json

        json.loads(body)
    elif lang == "python":
        compile(body, where, "exec")
    else:
        assert lang in UNCHECKED, f"{where}: no check for ```{lang} blocks"


def test_the_checks_catch_drift(tmp_path) -> None:
    """A misspelt option, an unmarked foreign tool and a wrong config key all fail."""
    with pytest.raises(Exception, match="No such option"):
        test_block("x", "bash", set(), "persona-gen run --confg jobs/configs/cpu_demo.yaml\n")
    with pytest.raises(AssertionError, match="external"):
        test_block("x", "bash", set(), "kubectl get pods\n")
    with pytest.raises(Exception, match="persona"):
        test_block("x", "yaml", set(), "personas: {nn: 3}\n")
    with pytest.raises(Exception, match="no Makefile target"):
        test_block("x", "bash", set(), "make demoo\n")
    with pytest.raises(Exception, match=r"run\.seed"):
        test_block("x", "bash", set(), "persona-gen run --config jobs/configs/cpu_demo.yaml "
                   "--set run.seed=x\n")
