"""cluster/: the Ray launcher config against Ray's own schema, the KubeRay manifests against a
field allow-list of the ray.io/v1 CRDs, and the runtime env against Ray's RuntimeEnv."""

from __future__ import annotations

import copy
import json
import re
import shlex
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import ray
import typer
import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, as a package
    import tomli as tomllib

from persona_gen.cli.main import app

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "cluster"
RAY_SCHEMA = Path(ray.__file__).parent / "autoscaler" / "ray-schema.json"
# GPUs per instance type used in cluster/ (AWS instance specs).
INSTANCE_GPUS = {"g5.12xlarge": 4, "p5.48xlarge": 8}


def load(rel: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / rel).read_text())


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def ray_pin() -> str:
    """Ray's exact tested version, from constraints.txt (pyproject states a range)."""
    pins = re.findall(r"^ray==(\S+)", (ROOT / "constraints.txt").read_text(), re.M)
    assert len(pins) == 1, pins
    return pins[0]


def test_every_yaml_in_cluster_parses() -> None:
    files = sorted(CLUSTER.rglob("*.yaml"))
    assert len(files) >= 5
    for f in files:
        assert isinstance(yaml.safe_load(f.read_text()), dict), f


# ---- Ray cluster launcher (cluster/aws.yaml) --------------------------------------------

def test_launcher_config_fits_rays_schema_and_validation() -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = load("cluster/aws.yaml")
    schema = json.loads(RAY_SCHEMA.read_text())
    jsonschema.Draft7Validator(schema).validate(config)
    # What `ray up` does before launching: merge the AWS defaults, then validate.
    validate_config(prepare_config(copy.deepcopy(config)))


def test_rays_schema_would_catch_a_mistake() -> None:
    schema = json.loads(RAY_SCHEMA.read_text())
    bad = load("cluster/aws.yaml")
    bad["available_node_types"]["gpu_h100"]["max_worker"] = 2  # misspelt key
    with pytest.raises(jsonschema.ValidationError, match="max_worker"):
        jsonschema.Draft7Validator(schema).validate(bad)


def test_launcher_layout() -> None:
    c = load("cluster/aws.yaml")
    types = c["available_node_types"]
    head = types[c["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    assert not head["node_config"]["InstanceType"].startswith(("g", "p")), "head must be CPU-only"
    workers = {k: v for k, v in types.items() if k != c["head_node_type"]}
    by_instance = {v["node_config"]["InstanceType"]: v for v in workers.values()}
    assert set(INSTANCE_GPUS) <= set(by_instance)
    for instance, gpus in INSTANCE_GPUS.items():
        w = by_instance[instance]
        assert w["resources"]["GPU"] == gpus
        assert 0 <= w["min_workers"] <= w["max_workers"]
    assert sum(w["max_workers"] for w in workers.values()) <= c["max_workers"]
    assert c["provider"]["type"] == "aws"
    # File mounts ship repo files: every local source must exist.
    for remote, local in c["file_mounts"].items():
        assert remote.startswith("/"), remote
        assert (ROOT / local).exists(), local


def test_one_image_everywhere_tagged_with_the_project_version() -> None:
    version = pyproject()["project"]["version"]
    images = {load("cluster/aws.yaml")["docker"]["image"]}
    for rel in ("cluster/kuberay/raycluster.yaml", "cluster/kuberay/rayjob.yaml"):
        images |= {c["image"] for c in _containers(_cluster_spec(load(rel)))}
    assert len(images) == 1, images
    assert images.pop().rsplit(":", 1)[1].startswith(version)


# ---- runtime env ----------------------------------------------------------------------------

def _check_runtime_env(env: dict[str, Any]) -> None:
    from ray.runtime_env import RuntimeEnv

    # RuntimeEnv accepts unknown keys as plugins, so the known-field check is ours.
    assert set(env) <= set(RuntimeEnv.known_fields), set(env) - set(RuntimeEnv.known_fields)
    RuntimeEnv(**env)  # type checks, e.g. env_vars must be str -> str
    for key in env.get("env_vars", {}):
        assert not re.search(r"SECRET|TOKEN$|PASSWORD|ACCESS_KEY", key), f"secret {key} in env"


def test_runtime_env() -> None:
    env = load("cluster/runtime_env.yaml")
    _check_runtime_env(env)
    assert env["working_dir"] == "."
    assert {".git", ".venv"} <= set(env["excludes"])
    assert "pip" not in env and "conda" not in env, "dependencies come from the image"


# ---- KubeRay (ray.io/v1) --------------------------------------------------------------------
# A compact allow-list of the CRD fields we may use (KubeRay v1.x), so a misspelt key fails
# here rather than being silently pruned by the API server.
RAYCLUSTER_SPEC = {"rayVersion", "enableInTreeAutoscaling", "autoscalerOptions", "headGroupSpec",
                   "workerGroupSpecs", "headServiceAnnotations", "suspend", "managedBy",
                   "gcsFaultToleranceOptions"}
AUTOSCALER_OPTIONS = {"upscalingMode", "idleTimeoutSeconds", "image", "imagePullPolicy",
                      "resources", "env", "envFrom", "securityContext", "volumeMounts", "version"}
HEAD_GROUP = {"rayStartParams", "template", "serviceType", "headService", "enableIngress"}
WORKER_GROUP = {"groupName", "replicas", "minReplicas", "maxReplicas", "rayStartParams",
                "template", "scaleStrategy", "numOfHosts", "suspend", "idleTimeoutSeconds"}
RAYJOB_SPEC = {"entrypoint", "runtimeEnvYAML", "jobId", "shutdownAfterJobFinishes",
               "ttlSecondsAfterFinished", "activeDeadlineSeconds", "backoffLimit",
               "rayClusterSpec", "clusterSelector", "submissionMode", "submitterPodTemplate",
               "submitterConfig", "entrypointNumCpus", "entrypointNumGpus",
               "entrypointResources", "suspend", "managedBy", "deletionStrategy", "metadata"}
POD_SPEC = {"containers", "volumes", "nodeSelector", "tolerations", "serviceAccountName",
            "affinity", "securityContext", "initContainers", "imagePullSecrets",
            "priorityClassName", "terminationGracePeriodSeconds", "restartPolicy"}
CONTAINER = {"name", "image", "imagePullPolicy", "ports", "resources", "env", "envFrom",
             "volumeMounts", "command", "args", "lifecycle", "securityContext"}
TOP = {"apiVersion", "kind", "metadata", "spec"}


def _cluster_spec(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["spec"]["rayClusterSpec"] if doc["kind"] == "RayJob" else doc["spec"]


def _groups(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [spec["headGroupSpec"], *spec.get("workerGroupSpecs", [])]


def _containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for g in _groups(spec) for c in g["template"]["spec"]["containers"]]


def _only(keys: Any, allowed: set[str], where: str) -> None:
    extra = set(keys) - allowed
    assert not extra, f"{where}: fields not in the ray.io/v1 allow-list: {sorted(extra)}"


def _check_cluster_spec(spec: dict[str, Any], where: str) -> None:
    _only(spec, RAYCLUSTER_SPEC, where)
    assert "headGroupSpec" in spec
    assert spec["rayVersion"] == ray_pin(), "rayVersion must equal pyproject's ray pin"
    _only(spec.get("autoscalerOptions", {}), AUTOSCALER_OPTIONS, f"{where}.autoscalerOptions")
    _only(spec["headGroupSpec"], HEAD_GROUP, f"{where}.headGroupSpec")
    for g in spec.get("workerGroupSpecs", []):
        _only(g, WORKER_GROUP, f"{where}.workerGroupSpecs[{g.get('groupName')}]")
        assert g["groupName"] and 0 <= g["minReplicas"] <= g["replicas"] <= g["maxReplicas"]
    for g in _groups(spec):
        # KubeRay's rayStartParams is map[string]string: a bare number or bool is rejected.
        assert all(isinstance(v, str) for v in g["rayStartParams"].values()), g["rayStartParams"]
        pod = g["template"]["spec"]
        _only(pod, POD_SPEC, f"{where} pod spec")
        volumes = {v["name"] for v in pod.get("volumes", [])}
        for c in pod["containers"]:
            _only(c, CONTAINER, f"{where} container {c.get('name')}")
            assert c["name"] and c["image"]
            for m in c.get("volumeMounts", []):
                assert m["name"] in volumes, f"mount {m['name']} has no volume"
            res = c["resources"]
            assert res["requests"] == res["limits"], "requests = limits keeps pods Guaranteed"
    head = spec["headGroupSpec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert "nvidia.com/gpu" not in head, "the head is CPU-only"
    gpus = [c["resources"]["limits"].get("nvidia.com/gpu")
            for g in spec["workerGroupSpecs"] for c in g["template"]["spec"]["containers"]]
    assert gpus and all(int(n) >= 1 for n in gpus), "every worker group holds GPUs"


def test_raycluster_manifest() -> None:
    doc = load("cluster/kuberay/raycluster.yaml")
    _only(doc, TOP, "RayCluster")
    assert (doc["apiVersion"], doc["kind"]) == ("ray.io/v1", "RayCluster")
    assert doc["metadata"]["name"]
    _check_cluster_spec(doc["spec"], "RayCluster.spec")


def test_rayjob_manifest() -> None:
    doc = load("cluster/kuberay/rayjob.yaml")
    _only(doc, TOP, "RayJob")
    assert (doc["apiVersion"], doc["kind"]) == ("ray.io/v1", "RayJob")
    spec = doc["spec"]
    _only(spec, RAYJOB_SPEC, "RayJob.spec")
    assert spec["entrypoint"] and "rayClusterSpec" in spec
    _check_cluster_spec(spec["rayClusterSpec"], "RayJob.spec.rayClusterSpec")
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec["backoffLimit"] >= 1
    assert spec["submissionMode"] in ("K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode")
    # The same cluster as raycluster.yaml, so the two cannot drift apart.
    assert spec["rayClusterSpec"] == load("cluster/kuberay/raycluster.yaml")["spec"]
    env = yaml.safe_load(spec["runtimeEnvYAML"])
    _check_runtime_env(env)
    assert env["env_vars"].items() <= load("cluster/runtime_env.yaml")["env_vars"].items()


def test_rayjob_retries_resume_the_same_run() -> None:
    """backoffLimit only resumes if every retry runs the same command with a fixed run id."""
    argv = shlex.split(load("cluster/kuberay/rayjob.yaml")["spec"]["entrypoint"])
    assert argv[:2] == ["persona-gen", "run"]
    run_id = argv[argv.index("--run-id") + 1]
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", run_id), "a literal run id"
    assert argv[argv.index("--output") + 1].startswith("s3://")
    # The options parse with the real CLI (nothing runs).
    sub = typer.main.get_command(app).get_command(None, "run")
    assert sub is not None
    params = sub.make_context("run", list(argv[2:])).params
    assert params["run_id"] == run_id
    # The config path is inside the image at /home/ray/persona-gen/<repo path>.
    config = params["config"]
    assert str(config).startswith("/home/ray/persona-gen/")
    assert (ROOT / str(config).removeprefix("/home/ray/persona-gen/")).is_file()


def test_service_account_is_the_one_pods_use_and_terraform_trusts() -> None:
    sa = load("cluster/kuberay/serviceaccount.yaml")
    assert (sa["apiVersion"], sa["kind"]) == ("v1", "ServiceAccount")
    name = sa["metadata"]["name"]
    for rel in ("cluster/kuberay/raycluster.yaml", "cluster/kuberay/rayjob.yaml"):
        for g in _groups(_cluster_spec(load(rel))):
            assert g["template"]["spec"]["serviceAccountName"] == name
    iam = (ROOT / "infra/terraform/iam.tf").read_text()
    assert f"system:serviceaccount:${{var.eks_namespace}}:{name}" in iam
    role = sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].rsplit("/", 1)[1]
    assert f'name               = "{role}"' in iam
