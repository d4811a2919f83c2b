"""cluster/: the Ray launcher config against Ray's own schema, the KubeRay overlays (EKS, GKE),
rendered from their kustomize base, against a field allow-list and the real ray.io/v1 CRD
schemas, the Slurm script's shape, and the runtime env against Ray's RuntimeEnv."""

from __future__ import annotations

import copy
import gzip
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
from tests.kustomize import render

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "cluster"
RAY_SCHEMA = Path(ray.__file__).parent / "autoscaler" / "ray-schema.json"
# (GPUs, Ray's accelerator type) per AWS instance type (AWS instance specs; the type is what
# Ray's EC2 detection reports from GpuInfo.Gpus[0].Name).
INSTANCE_GPUS = {"g5.12xlarge": (4, "A10G"), "p4d.24xlarge": (8, "A100"),
                 "p5.48xlarge": (8, "H100")}
# The same for GKE's accelerator node labels (GKE's GPU machine types).
GKE_GPUS = {"nvidia-h100-80gb": (8, "H100"), "nvidia-a100-80gb": (8, "A100"),
            "nvidia-l4": (4, "L4")}
KUBERAY = ROOT / "cluster" / "kuberay"
OVERLAYS = ("eks", "gke")
# The oldest KubeRay with spec.authOptions (token auth); tests/data/kuberay holds its CRDs.
MIN_KUBERAY = "1.5.1"
CRD_SCHEMAS = ROOT / "tests" / "data" / "kuberay" / f"crd-schemas-v{MIN_KUBERAY}.json.gz"
# The biggest model in persona_gen/models (llama-3.1-70b-instruct: 70.6B parameters, bf16),
# in bytes; a node's model cache must hold it with 25% to spare.
LARGEST_WEIGHTS = int(70.6e9 * 2)
CACHE_MOUNT = "/home/ray/.cache"
IMAGE = re.compile(r"(?P<repo>.+/persona-gen):(?P<version>\d+\.\d+\.\d+)-b(?P<build>\d+)-"
                   r"(?P<kind>cpu|gpu)")


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
        doc = yaml.safe_load(f.read_text())
        # Overlay patches are JSON 6902 operation lists; everything else is a mapping.
        if f.parent.parent.name == "overlays" and f.name != "kustomization.yaml":
            assert isinstance(doc, list) and all({"op", "path"} <= set(op) for op in doc), f
        else:
            assert isinstance(doc, dict), f


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
    for name, w in workers.items():
        instance = w["node_config"]["InstanceType"]
        assert instance in INSTANCE_GPUS, f"{name}: add {instance} to INSTANCE_GPUS"
        gpus, accel = INSTANCE_GPUS[instance]
        assert w["resources"]["GPU"] == gpus, name
        # The declared accelerator type is the instance's (what Ray detects there).
        declared = [r for r in w["resources"] if r.startswith("accelerator_type:")]
        assert declared == [f"accelerator_type:{accel}"], (name, declared)
        assert 0 <= w["min_workers"] <= w["max_workers"]
    # One GPU type per cluster: a plan made for 8xH100 cannot land on other GPUs.
    accels = {INSTANCE_GPUS[w["node_config"]["InstanceType"]][1] for w in workers.values()}
    assert len(accels) == 1, f"one GPU type per cluster file, found {sorted(accels)}"
    assert sum(w["max_workers"] for w in workers.values()) <= c["max_workers"]
    assert c["provider"]["type"] == "aws"
    # File mounts ship repo files: every local source must exist.
    for remote, local in c["file_mounts"].items():
        assert remote.startswith("/"), remote
        assert (ROOT / local).exists(), local


def test_launcher_keeps_the_model_cache_on_the_workers_disk() -> None:
    c = load("cluster/aws.yaml")
    mounts = [o.split()[1] for o in c["docker"]["worker_run_options"]
              if o.startswith("--volume ")]
    host = [m.split(":")[0] for m in mounts if m.split(":")[1] == CACHE_MOUNT]
    assert host, f"no host volume at {CACHE_MOUNT} on the workers"
    # Created by the ssh user (uid 1000 = the image's ray user) before Docker starts.
    assert f"mkdir -p {host[0]}" in c["initialization_commands"]
    for w in c["available_node_types"].values():
        if w["resources"].get("GPU"):
            disk = w["node_config"]["BlockDeviceMappings"][0]["Ebs"]["VolumeSize"] * 10**9
            assert disk >= 1.25 * LARGEST_WEIGHTS + 100 * 10**9  # weights + image + logs


def rendered(overlay: str) -> dict[str, dict[str, Any]]:
    """kind -> resource, as `kubectl apply -k cluster/kuberay/overlays/<overlay>` applies."""
    docs = render(KUBERAY / "overlays" / overlay)
    kinds = [d["kind"] for d in docs]
    assert sorted(kinds) == ["RayJob", "ServiceAccount"], kinds
    return {d["kind"]: d for d in docs}


def _images() -> dict[str, set[str]]:
    """{"head": images, "worker": images} over the launcher and both KubeRay overlays."""
    docker = load("cluster/aws.yaml")["docker"]
    out = {"head": {docker["head_image"]}, "worker": {docker["worker_image"]}}
    assert "image" not in docker, "the head and the workers run different images"
    for overlay in OVERLAYS:
        spec = _cluster_spec(rendered(overlay)["RayJob"])
        out["head"] |= {c["image"] for c in _containers({"headGroupSpec": spec["headGroupSpec"]})}
        for g in spec["workerGroupSpecs"]:
            pod = g["template"]["spec"]
            out["worker"] |= {c["image"] for c in pod["containers"] + pod.get("initContainers", [])}
    return out


def test_versioned_images_cpu_head_gpu_workers() -> None:
    version = pyproject()["project"]["version"]
    images = _images()
    parsed = {role: [IMAGE.fullmatch(i) for i in found] for role, found in images.items()}
    for role, matches in parsed.items():
        assert all(matches), f"{role} image tags must be <version>-b<build>-<cpu|gpu>: {images}"
    assert {m["kind"] for m in parsed["head"]} == {"cpu"}, "the head runs the CPU image"
    assert {m["kind"] for m in parsed["worker"]} == {"gpu"}
    everything = [m for ms in parsed.values() for m in ms]
    # One build everywhere, of this version (the registry differs per cloud).
    assert len({(m["repo"].rsplit("/", 1)[-1], m["version"], m["build"])
                for m in everything}) == 1, images
    assert everything[0]["version"] == version


def test_the_image_build_is_set_in_one_place_for_kubernetes() -> None:
    """The overlays name only a registry; the build is base/kustomization.yaml's."""
    base = yaml.safe_load((KUBERAY / "base" / "kustomization.yaml").read_text())
    tags = {i["newTag"] for i in base["images"]}
    builds = {t.rsplit("-", 1)[0] for t in tags}
    assert len(builds) == 1 and {t.rsplit("-", 1)[1] for t in tags} == {"cpu", "gpu"}, tags
    for overlay in OVERLAYS:
        k = yaml.safe_load((KUBERAY / "overlays" / overlay / "kustomization.yaml").read_text())
        assert all("newTag" not in i for i in k["images"]), overlay
    build = builds.pop()
    for f in KUBERAY.rglob("*.yaml"):
        if f != KUBERAY / "base" / "kustomization.yaml":
            assert build not in f.read_text(), f"{f} repeats the image build {build}"
    # The Ray launcher cannot read that file: aws.yaml names the same build (checked above).


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
RAYCLUSTER_SPEC = {"rayVersion", "authOptions", "enableInTreeAutoscaling", "autoscalerOptions", "headGroupSpec",
                   "workerGroupSpecs", "headServiceAnnotations", "suspend", "managedBy",
                   "gcsFaultToleranceOptions"}
AUTOSCALER_OPTIONS = {"upscalingMode", "idleTimeoutSeconds", "image", "imagePullPolicy",
                      "resources", "env", "envFrom", "securityContext", "volumeMounts", "version"}
HEAD_GROUP = {"rayStartParams", "template", "serviceType", "headService", "enableIngress",
              "resources", "labels"}
WORKER_GROUP = {"groupName", "replicas", "minReplicas", "maxReplicas", "rayStartParams",
                "template", "scaleStrategy", "numOfHosts", "suspend", "idleTimeoutSeconds",
                "resources", "labels"}
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


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rayjob_manifest(overlay: str) -> None:
    doc = rendered(overlay)["RayJob"]
    _only(doc, TOP, "RayJob")
    assert (doc["apiVersion"], doc["kind"]) == ("ray.io/v1", "RayJob")
    spec = doc["spec"]
    _only(spec, RAYJOB_SPEC, "RayJob.spec")
    assert spec["entrypoint"] and "rayClusterSpec" in spec
    _check_cluster_spec(spec["rayClusterSpec"], "RayJob.spec.rayClusterSpec")
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec["backoffLimit"] >= 1
    assert spec["submissionMode"] in ("K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode")
    env = yaml.safe_load(spec["runtimeEnvYAML"])
    _check_runtime_env(env)
    assert env["env_vars"].items() <= load("cluster/runtime_env.yaml")["env_vars"].items()


@pytest.mark.parametrize(("overlay", "scheme"), [("eks", "s3://"), ("gke", "gs://")])
def test_rayjob_retries_resume_the_same_run(overlay: str, scheme: str) -> None:
    """backoffLimit only resumes if every retry runs the same command with a fixed run id."""
    argv = shlex.split(rendered(overlay)["RayJob"]["spec"]["entrypoint"])
    assert argv[:2] == ["persona-gen", "run"]
    run_id = argv[argv.index("--run-id") + 1]
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", run_id), "a literal run id"
    assert argv[argv.index("--output") + 1].startswith(scheme)
    # The options parse with the real CLI (nothing runs), overrides included.
    sub = typer.main.get_command(app).get_command(None, "run")
    assert sub is not None
    params = sub.make_context("run", list(argv[2:])).params
    assert params["run_id"] == run_id
    # The config path is inside the image at /home/ray/persona-gen/<repo path>.
    config = params["config"]
    assert str(config).startswith("/home/ray/persona-gen/")
    assert (ROOT / str(config).removeprefix("/home/ray/persona-gen/")).is_file()
    # Every input is read from the overlay's store.
    from persona_gen.run.config import load_config

    cfg = load_config(ROOT / str(config).removeprefix("/home/ray/persona-gen/"),
                      params.get("set_") or [])
    for uri in [*cfg.census.sources, cfg.prompts.source]:
        assert str(uri).startswith(scheme), uri


def test_service_accounts_use_each_clouds_workload_identity() -> None:
    for overlay, key in (("eks", "eks.amazonaws.com/role-arn"),
                         ("gke", "iam.gke.io/gcp-service-account")):
        docs = rendered(overlay)
        sa = docs["ServiceAccount"]
        assert (sa["apiVersion"], sa["kind"]) == ("v1", "ServiceAccount")
        name = sa["metadata"]["name"]
        assert list(sa["metadata"]["annotations"]) == [key], overlay
        for g in _groups(_cluster_spec(docs["RayJob"])):
            assert g["template"]["spec"]["serviceAccountName"] == name
    sa = rendered("eks")["ServiceAccount"]
    iam = (ROOT / "infra/terraform/iam.tf").read_text()
    assert f"system:serviceaccount:${{var.eks_namespace}}:{sa['metadata']['name']}" in iam
    role = sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].rsplit("/", 1)[1]
    assert f'name               = "{role}"' in iam
    gsa = rendered("gke")["ServiceAccount"]["metadata"]["annotations"][
        "iam.gke.io/gcp-service-account"]
    assert re.fullmatch(r"[a-z][a-z0-9-]+@[A-Za-z0-9_-]+\.iam\.gserviceaccount\.com", gsa), gsa


def test_gpu_workers_scale_from_zero_and_the_head_is_on_demand() -> None:
    """A config or input error costs no GPU node: the GPU group starts empty (the autoscaler
    adds pods only for engine actors, after the job's preflight on the head)."""
    for overlay in OVERLAYS:
        spec = _cluster_spec(rendered(overlay)["RayJob"])
        assert spec["enableInTreeAutoscaling"] is True
        for g in spec["workerGroupSpecs"]:
            assert g["replicas"] == g["minReplicas"] == 0, (overlay, g["groupName"])
        head = spec["headGroupSpec"]["template"]["spec"]
        worker = spec["workerGroupSpecs"][0]["template"]["spec"]
        if overlay == "eks":
            assert head["nodeSelector"] == {"eks.amazonaws.com/capacityType": "ON_DEMAND"}
            assert worker["nodeSelector"]["eks.amazonaws.com/capacityType"] in ("SPOT",
                                                                                "ON_DEMAND")
        else:
            terms = head["affinity"]["nodeAffinity"][
                "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
            assert terms == [{"matchExpressions": [{"key": "cloud.google.com/gke-spot",
                                                    "operator": "DoesNotExist"}]}]
            assert worker["nodeSelector"].get("cloud.google.com/gke-spot", "true") == "true"


def test_the_renderer_refuses_what_it_does_not_implement(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(
        {"resources": ["x.yaml"], "replacements": []}))
    with pytest.raises(ValueError, match="replacements"):
        render(tmp_path)
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(
        {"resources": ["x.yaml"], "patches": [{"path": "p.yaml", "target": {"kind": "Nope"}}]}))
    (tmp_path / "x.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n")
    (tmp_path / "p.yaml").write_text("- {op: add, path: /data, value: {}}\n")
    with pytest.raises(ValueError, match="matches no resource"):
        render(tmp_path)


# ---- KubeRay against its real CRD schemas, token auth, GPU pin, model cache ---------------

def _strict(schema: Any) -> Any:
    """The CRD's OpenAPI schema as JSON Schema that rejects unknown fields, as `kubectl
    apply --validate=strict` would (the API server otherwise prunes them silently)."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items() if not k.startswith("x-kubernetes-")}
        if "properties" in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            out.setdefault("additionalProperties", False)
        if schema.get("x-kubernetes-int-or-string"):
            out.pop("type", None)
            out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


def _crd_validator(kind: str) -> jsonschema.Draft4Validator:
    schemas = json.loads(gzip.decompress(CRD_SCHEMAS.read_bytes()))
    return jsonschema.Draft4Validator(_strict(schemas[kind]))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rendered_overlays_fit_the_oldest_supported_kuberay_crds(overlay: str) -> None:
    doc = rendered(overlay)["RayJob"]
    errors = sorted(_crd_validator("RayJob").iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{overlay}: {'.'.join(map(str, e.path))}: {e.message}"
                                 for e in errors[:10])
    # The cluster inside the job is a valid RayCluster spec too.
    cluster = {"apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": "x"},
               "spec": doc["spec"]["rayClusterSpec"]}
    assert not list(_crd_validator("RayCluster").iter_errors(cluster))


def test_crd_check_would_catch_a_mistake() -> None:
    doc = rendered("eks")["RayJob"]
    bad = {"apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": "x"},
           "spec": copy.deepcopy(doc["spec"]["rayClusterSpec"])}
    bad["spec"]["authOptions"] = {"mode": "tokens"}
    bad["spec"]["workerGroupSpecs"][0]["template"]["spec"]["nodeSelectr"] = {}
    messages = [e.message for e in _crd_validator("RayCluster").iter_errors(bad)]
    assert any("'tokens' is not one of" in m for m in messages), messages
    assert any("nodeSelectr" in m for m in messages), messages


def test_token_auth_and_the_stated_minimum_kuberay() -> None:
    for overlay in OVERLAYS:
        spec = _cluster_spec(rendered(overlay)["RayJob"])
        assert spec["authOptions"] == {"mode": "token"}, overlay
        # KubeRay refuses token mode below Ray 2.52.
        assert tuple(int(x) for x in spec["rayVersion"].split(".")) >= (2, 52)
    for f in ("base/rayjob.yaml", "base/kustomization.yaml"):
        assert f"KubeRay v{MIN_KUBERAY} or newer" in (KUBERAY / f).read_text(), f
    assert f"KubeRay v{MIN_KUBERAY}" in (ROOT / "docs/cluster/ray.md").read_text()


def _quantity(q: str) -> float:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "K": 1e3, "M": 1e6, "G": 1e9,
             "T": 1e12}
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]i?)?", str(q))
    assert m, q
    return float(m.group(1)) * units.get(m.group(2) or "", 1)


def test_gpu_workers_are_pinned_to_one_gpu_type() -> None:
    for overlay, label, table in (("eks", "node.kubernetes.io/instance-type", INSTANCE_GPUS),
                                  ("gke", "cloud.google.com/gke-accelerator", GKE_GPUS)):
        accels = set()
        for g in _cluster_spec(rendered(overlay)["RayJob"])["workerGroupSpecs"]:
            pod = g["template"]["spec"]
            value = pod["nodeSelector"][label]
            assert value in table, f"{overlay}: {g['groupName']}: unknown {value}"
            gpus, accel = table[value]
            accels.add(accel)
            assert g["resources"] == {f"accelerator_type:{accel}": "1"}, g["groupName"]
            res = pod["containers"][0]["resources"]
            assert int(res["limits"]["nvidia.com/gpu"]) == int(res["requests"]["nvidia.com/gpu"]) \
                == gpus, g["groupName"]
        assert len(accels) == 1, f"{overlay}: one GPU type per cluster, found {sorted(accels)}"


# What each overlay's node set-up gives the kubelet as ephemeral storage (the instance-store
# NVMe or local SSDs, documented in its node-storage.yaml) and where it mounts it.
NODE_NVME = {"eks": ("/mnt/k8s-disks/0/", 8 * 3.84e12), "gke": (
    "/mnt/stateful_partition/kube-ephemeral-ssd/", 16 * 375e9)}


def test_gpu_workers_cache_models_on_node_nvme_that_outlives_pods() -> None:
    for overlay in OVERLAYS:
        for g in _cluster_spec(rendered(overlay)["RayJob"])["workerGroupSpecs"]:
            pod = g["template"]["spec"]
            volumes = {v["name"]: v for v in pod["volumes"]}
            [c] = pod["containers"]
            [mount] = [m for m in c["volumeMounts"] if m["mountPath"] == CACHE_MOUNT]
            cache = volumes[mount["name"]]
            # A node folder (survives the pod: a retry on the node reuses the copy), on the
            # NVMe the overlay's node set-up mounts, with room for the largest model.
            prefix, nvme = NODE_NVME[overlay]
            assert set(cache) == {"name", "hostPath"}, cache
            assert cache["hostPath"]["path"].startswith(prefix), (overlay, cache)
            assert cache["hostPath"]["type"] == "DirectoryOrCreate"
            assert nvme >= 1.25 * LARGEST_WEIGHTS
            # The image runs as uid 1000: an init container hands it the folder.
            [init] = pod["initContainers"]
            assert mount["name"] in {m["name"] for m in init["volumeMounts"]}
            assert "chown 1000" in " ".join(init["command"])
            res = c["resources"]
            assert res["requests"]["ephemeral-storage"] == res["limits"]["ephemeral-storage"]
            # Logs, the writable layer and spilling; fits even a 200 GB root disk.
            assert _quantity(res["requests"]["ephemeral-storage"]) <= 100 * 2**30
            env = {e["name"]: e.get("value") for e in c["env"]}
            for var in ("HF_HOME", "PERSONA_GEN_CACHE"):
                assert env[var].startswith(CACHE_MOUNT + "/"), var


# ---- Slurm (cluster/slurm/persona-gen.sbatch; run for real by make test-slurm) -------------

def test_slurm_script_brings_up_ray_the_way_rays_guide_does() -> None:
    import subprocess

    script = CLUSTER / "slurm" / "persona-gen.sbatch"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    text = script.read_text()
    sbatch = dict(re.findall(r"^#SBATCH --([\w-]+)(?:=(\S+))?", text, re.M))
    assert sbatch["ntasks-per-node"] == "1" and "exclusive" in sbatch
    assert int(sbatch["gpus-per-task"]) >= 1, "GPUs come from the allocation"
    # The head on the first node, a worker per other node, each a blocking srun step with the
    # allocation's CPUs and GPUs; the driver then runs `persona-gen run` with the user's args.
    assert re.search(r'srun --nodes=1 --ntasks=1 -w "\$head_node" \\\s+ray start --head --block',
                     text)
    assert re.search(r'for node in "\$\{nodes\[@\]:1\}"; do\s+srun --nodes=1 --ntasks=1 -w '
                     r'"\$node" \\\s+ray start --block --address', text)
    assert text.count('--num-gpus="$gpus"') == 2 and text.count('--num-cpus="$cpus"') == 2
    assert 'persona-gen run "$@" &' in text and "RAY_ADDRESS" in text
