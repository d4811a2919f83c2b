"""The cluster guides: docs/cluster/ray.md (the reference, "Running on a cluster", read with
the README's GPU and cluster sections and docs/models.md's model families) and
docs/cluster/{aws,gcp,slurm}.md. Each names every command a user needs, every `persona-gen ...` command it shows
(and the Slurm script's, which are `persona-gen run`'s) parses with the real CLI, and every
repo path exists; each docs guide is end to end in at most 10 steps, ending with the export.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer

from persona_gen.cli.main import app

ROOT = Path(__file__).resolve().parents[1]
HEADING = "Running on a cluster"
# What a user must be told to do, start to finish.
REQUIRED = [
    "persona-gen cost --config jobs/configs/paper_8xh100.yaml --cluster 8xH100",
    "terraform apply",
    # Inputs the nodes can read: staged once under the bucket's inputs/ prefix.
    "persona-gen census download --year 2023 --states US --to s3://persona-gen-runs/inputs/census",
    "s3://persona-gen-runs/inputs/prism_conversations.jsonl",
    "docker build -f infra/Dockerfile --target cpu",
    "docker build -f infra/Dockerfile --target gpu",
    "KubeRay v1.5.1 or newer",
    "RAY_AUTH_TOKEN",
    "docker build -f infra/Dockerfile",
    "ray up cluster/aws.yaml",
    "kubectl apply -k cluster/kuberay/overlays/eks",
    "docs/cluster/aws.md",
    "docs/cluster/gcp.md",
    "docs/cluster/slurm.md",
    "ray job submit",
    "--runtime-env cluster/runtime_env.yaml",
    "python jobs/generate_feedback.py --config jobs/configs/paper_8xh100.yaml",
    "python jobs/run_bench.py --config jobs/configs/bench_paper.yaml",
    "persona-gen status --output",
    "persona-gen run --config jobs/configs/local_gpu.yaml",
    "persona-gen models list",
    "infra/local-s3.sh",
    "aws s3 sync",
    "ray down cluster/aws.yaml",
    "python -m persona_gen.cost.derive",
]
SHELL_BREAKS = {"|", "||", "&&", ";", ">", ">>", "<", "&", "2>", "#"}


def guide() -> str:
    """docs/cluster/ray.md's section, up to the next heading of the same or a higher level
    (headings only: '# ...' lines inside fenced code blocks are shell comments), then the
    README and docs/models.md, which the reference links to."""
    lines = (ROOT / "docs/cluster/ray.md").read_text().splitlines()
    start = next((i for i, ln in enumerate(lines)
                  if re.fullmatch(rf"(#+) {re.escape(HEADING)}\s*", ln)), None)
    assert start is not None, f"README.md has no '{HEADING}' section"
    level = len(lines[start]) - len(lines[start].lstrip("#"))
    out, fenced = [lines[start]], False
    for ln in lines[start + 1:]:
        if ln.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(rf"#{{1,{level}}} ", ln):
            break
        out.append(ln)
    out += [(ROOT / "README.md").read_text(), (ROOT / "docs/models.md").read_text()]
    return "\n".join(out)


def commands(text: str) -> list[list[str]]:
    """Shell commands from fenced blocks (continuations joined) and inline code spans."""
    lines = []
    fence = re.compile(r"```[^\n]*\n(.*?)```", re.S)
    for block in fence.findall(text):
        lines += re.sub(r"\\\n\s*", " ", block).splitlines()
    # Inline spans may wrap onto the next line of the paragraph.
    lines += [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", fence.sub("", text))]
    out = []
    for line in lines:
        line = re.sub(r"(^|\s)#.*", "", line).strip()  # drop comments
        try:
            words = shlex.split(line)
        except ValueError:
            continue
        if words:
            out.append(words)
    return out


def after(words: list[str], start: int) -> list[str]:
    """The words of one command from `start` up to the next shell operator."""
    cut = []
    for w in words[start:]:
        if w in SHELL_BREAKS or w.startswith((">", "2>")):
            break
        cut.append(w)
    return cut


def cli_invocations(text: str) -> list[list[str]]:
    """Every CLI argv the guide shows: `persona-gen ...` and the job scripts, which pass
    their arguments to a fixed persona-gen command (read from the script itself)."""
    found = []
    for words in commands(text):
        for i, w in enumerate(words):
            # In command position only: `gcloud ... create persona-gen` names a resource.
            first = i == 0 or words[i - 1] in (*SHELL_BREAKS, "--") \
                or re.fullmatch(r"[A-Z_]+=\S*", words[i - 1]) is not None
            if w == "persona-gen" and first:
                found.append(after(words, i + 1))
            elif w.endswith("cluster/slurm/persona-gen.sbatch"):
                found.append(["run", *after(words, i + 1)])  # the script runs `persona-gen run`
            elif w.startswith("jobs/") and w.endswith(".py") and (ROOT / w).is_file():
                m = re.search(r"main\(\[(.*?)\*sys\.argv", (ROOT / w).read_text())
                if m:
                    prefix = re.findall(r'"([^"]+)"', m.group(1))
                    found.append([*prefix, *after(words, i + 1)])
    return found


def parse(argv: list[str]) -> None:
    """Resolve the command path and parse its options with the real CLI, running nothing."""
    command = typer.main.get_command(app)
    path = ["persona-gen"]
    rest = list(argv)
    while hasattr(command, "get_command") and rest and not rest[0].startswith("-"):
        sub = command.get_command(None, rest[0])
        assert sub is not None, f"`{' '.join([*path, rest[0]])}`: no such command"
        path.append(rest.pop(0))
        command = sub
    assert not hasattr(command, "get_command"), f"`{' '.join(path)}` needs a subcommand"
    if not rest and any(p.required for p in command.params):
        return  # prose naming a command (`persona-gen export`), not an invocation
    command.make_context(" ".join(path), rest)


def test_guide_names_every_command() -> None:
    text = guide()
    missing = [c for c in REQUIRED if c not in text]
    assert not missing, f"the cluster guide does not mention: {missing}"


def test_every_persona_gen_command_in_the_guide_exists() -> None:
    invocations = cli_invocations(guide())
    assert len(invocations) >= 8
    shown = {tuple(a for a in argv if not a.startswith("-"))[:1] for argv in invocations}
    assert {("cost",), ("run",), ("status",), ("models",)} <= shown
    for argv in invocations:
        parse(argv)


def test_every_repo_path_in_the_guide_exists() -> None:
    paths = set(re.findall(r"(?<![\w./-])((?:jobs|cluster|infra|persona_gen)/[\w./-]*\w)",
                           guide()))
    assert len(paths) >= 10
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing, f"the guide names paths that do not exist: {missing}"


def test_the_checker_catches_a_wrong_command() -> None:
    with pytest.raises(AssertionError, match="no such command"):
        parse(["costs", "--cluster", "8xH100"])
    with pytest.raises(Exception, match="No such option"):
        parse(["cost", "--clusters", "8xH100"])


def test_the_paper_table_in_the_guide_is_current() -> None:
    """The guide's table must be what `cost` prints today for the paper config."""
    from persona_gen.cli.cost_cmd import registry_engines
    from persona_gen.cost import load_table, parse_cluster, plan_cost, workload_from_config
    from persona_gen.run.config import load_config

    totals = re.search(r"^│ total\s+│\s+│\s+([\d,]+)\s+│.*?│\s+([\d.]+)\s+│[^│]+│\s+│$",
                       guide(), re.M)
    assert totals, "no paper-scale plan table in the guide"
    table = load_table()
    plan = plan_cost(workload_from_config(load_config(ROOT / "jobs/configs/paper_8xh100.yaml")),
                     parse_cluster("8xH100", table), table, registry_engines())
    assert int(totals.group(1).replace(",", "")) == plan.calls
    assert float(totals.group(2)) == round(plan.gpu_hours, 2), (
        "regenerate the table: persona-gen cost --config jobs/configs/paper_8xh100.yaml "
        "--cluster 8xH100")


# ---- docs/cluster: one guide per place to run, each end to end in at most 10 steps --------

GUIDES = {
    "docs/cluster/aws.md": [
        "persona-gen cost --config jobs/configs/paper_8xh100.yaml --cluster 8xH100",
        "terraform init && terraform apply",
        "--to s3://persona-gen-runs/inputs/census",
        "persona-gen storage check s3://persona-gen-runs/runs",
        "docker build -f infra/Dockerfile --target gpu",
        "localStorage: {strategy: RAID0}",
        "KubeRay v1.5.1 or newer",
        "kubectl apply -k cluster/kuberay/overlays/eks",
        "persona-gen status --run s3://persona-gen-runs/runs/paper-8xh100-v1",
    ],
    "docs/cluster/gcp.md": [
        "persona-gen cost --config jobs/configs/paper_8xh100.yaml --cluster 8xH100",
        "gcloud storage buckets create gs://persona-gen-runs",
        "roles/iam.workloadIdentityUser",
        "--to gs://persona-gen-runs/inputs/census",
        "persona-gen storage check gs://persona-gen-runs/runs",
        "--ephemeral-storage-local-ssd=count=16",
        "--spot",
        "KubeRay v1.5.1 or newer",
        "kubectl apply -k cluster/kuberay/overlays/gke",
        "persona-gen status --run gs://persona-gen-runs/runs/paper-8xh100-v1",
    ],
    "docs/cluster/slurm.md": [
        "persona-gen cost --config jobs/configs/paper_8xh100.yaml --cluster 8xH100",
        "pip install -c constraints.txt '.[gpu]'",
        "persona-gen storage check /shared/persona-gen/runs",
        "sbatch cluster/slurm/persona-gen.sbatch --config jobs/configs/paper_8xh100.yaml",
        "scancel",
        "persona-gen status --run /shared/persona-gen/runs/paper-v1",
        "make test-slurm",
    ],
}


def steps(text: str) -> list[tuple[int, str]]:
    """(number, body) of each `## N. Title` step."""
    parts = re.split(r"^## (\d+)\. .*$", text, flags=re.M)
    return [(int(parts[i]), parts[i + 1]) for i in range(1, len(parts) - 1, 2)]


@pytest.mark.parametrize("rel", sorted(GUIDES))
def test_each_docs_guide_is_end_to_end_in_ten_steps(rel: str) -> None:
    text = (ROOT / rel).read_text()
    found = steps(text)
    assert 3 <= len(found) <= 10, f"{rel}: {len(found)} steps"
    assert [n for n, _ in found] == list(range(1, len(found) + 1)), rel
    last = [words for words in commands(found[-1][1]) if "persona-gen" in words]
    assert last and last[-1][:2] == ["persona-gen", "export"], f"{rel} must end with the export"
    missing = [c for c in GUIDES[rel] if c not in text]
    assert not missing, f"{rel} does not mention: {missing}"


@pytest.mark.parametrize("rel", sorted(GUIDES))
def test_every_command_and_path_in_a_docs_guide_is_real(rel: str) -> None:
    text = (ROOT / rel).read_text()
    invocations = cli_invocations(text)
    assert len(invocations) >= 4, rel
    for argv in invocations:
        parse(argv)
    paths = set(re.findall(r"(?<![\w./-])((?:jobs|cluster|infra|persona_gen|docs)/[\w./-]*\w)",
                           text))
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing, f"{rel} names paths that do not exist: {missing}"
