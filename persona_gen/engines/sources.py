"""Where a model's weights come from: bundled:NAME, a local or shared-filesystem folder, an
object-store folder (s3://, gs:// or az://bucket/prefix), or a Hugging Face id (left to
vLLM, which downloads and caches it).

Before weights are written to a node's disk, the free space is checked against their size
(a 70B model is 141 GB), and a copy that a killed engine left half-written is removed, so a
retry never fills the disk with a second one.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from persona_gen.engines import bundled
from persona_gen.errors import ConfigError, StorageError
from persona_gen.storage.settings import S3Settings
from persona_gen.storage.uri import SCHEMES, store_endpoint

_DONE = ".persona-gen-complete"


@dataclass(frozen=True)
class Source:
    kind: str
    """'bundled', 'local', 'store' (s3://, gs://, az://) or 'hf'."""
    value: str


def classify(source: str) -> Source:
    if source.startswith("bundled:"):
        return Source("bundled", source.split(":", 1)[1])
    if source.split("://", 1)[0] in SCHEMES and "://" in source:
        return Source("store", source)
    if source.startswith("file://"):
        return Source("local", source[len("file://"):])
    if source.startswith(("/", "./", "../", "~")) or Path(source).expanduser().is_dir():
        return Source("local", source)
    if "://" in source:
        raise ConfigError(f"unsupported source scheme in '{source}' (use an HF id, a folder, "
                          f"s3://, gs://, az:// or bundled:NAME)", source="source")
    return Source("hf", source)


def is_local(source: str) -> bool:
    """True when loading never needs the network (bundled, a folder, an s3 copy)."""
    return classify(source).kind != "hf"


def materialise(source: str, s3: S3Settings | None = None, size_bytes: float = 0) -> str:
    """A path or HF id that vLLM can load; bundled and s3 sources are fetched into the cache.

    `s3` is the run's storage settings (endpoint, region); default: the environment's.
    `size_bytes`: the weights' size where known (the model file's architecture), to check
    the Hugging Face cache's disk before vLLM downloads into it.
    """
    src = classify(source)
    if src.kind == "hf":
        check_hf_cache_room(src.value, size_bytes)
        return src.value
    if src.kind == "bundled":
        return str(bundled.ensure(src.value))
    if src.kind == "local":
        folder = Path(src.value).expanduser().resolve()
        if not (folder / "config.json").is_file():
            raise ConfigError(f"'{folder}' is not a Hugging Face model folder (no config.json)",
                              source="source")
        return str(folder)
    if src.kind == "store":
        return str(fetch_s3(src.value, s3)[0])
    return src.value


def adapter_path(source: str, s3: S3Settings | None = None) -> str:
    """A LoRA adapter folder vLLM can load: local (checked for adapter_config.json), s3://
    (fetched into the cache) or a Hugging Face id (vLLM downloads it)."""
    src = classify(source)
    if src.kind == "local":
        folder = Path(src.value).expanduser().resolve()
        if not (folder / "adapter_config.json").is_file():
            raise ConfigError(f"'{folder}' is not a LoRA adapter folder (no adapter_config.json)",
                              source="lora_adapter")
        return str(folder)
    if src.kind == "store":
        return str(fetch_s3(src.value, s3)[0])
    return src.value


def s3_cache_folder(uri: str, s3: S3Settings | None = None) -> Path:
    """Where an object-store model folder is copied on this node: one folder per store,
    endpoint and path, so two services with the same bucket name never share a copy."""
    scheme, path = uri.split("://", 1)
    # S3 keeps the folder name it always had (.../s3/aws/...), so existing copies stay valid.
    endpoint = store_endpoint(uri, s3) if scheme != "s3" else (
        (s3 or S3Settings()).resolved_endpoint() or "aws")
    host = re.sub(r"[^A-Za-z0-9.-]+", "_", urlparse(endpoint).netloc or endpoint)
    return bundled.cache_dir() / "models" / SCHEMES[scheme] / host / path.strip("/")


def node_name() -> str:
    """This machine as an operator finds it: host name, and the Ray node's address."""
    name = socket.gethostname()
    try:
        import ray

        if ray.is_initialized():
            return f"{name} ({ray.util.get_node_ip_address()})"
    except Exception:
        pass
    return name


def check_free_disk(folder: Path, need_bytes: float, what: str, source: str) -> None:
    """StorageError in one line naming the node, the folder and both sizes when `folder`'s
    disk has less room than `need_bytes` (plus 1 GB for everything else writing there)."""
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < need_bytes + 1e9:
        raise StorageError(f"node {node_name()}: {folder} has {_size(free)} free; {what} "
                           f"needs {_size(need_bytes)} (give the model volume more room, "
                           f"or set PERSONA_GEN_CACHE to a larger disk)", source=source)


def _size(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def check_hf_cache_room(repo: str, size_bytes: float) -> None:
    """Before vLLM downloads `repo` into the Hugging Face cache: enough room for it, unless
    its weights are already there."""
    if size_bytes <= 0:
        return
    try:
        from huggingface_hub import constants
    except ImportError:
        return
    cache = Path(constants.HF_HUB_CACHE)
    snapshots = cache / f"models--{repo.replace('/', '--')}" / "snapshots"
    if snapshots.is_dir() and any(snapshots.glob("*/*.safetensors")):
        return
    check_free_disk(cache, size_bytes, f"{repo} (about, from its architecture)", repo)


def remove_stale_copies(target: Path) -> list[Path]:
    """Every unfinished copy of `target` beside it (`.<name>.tmp-<pid>`), whichever process
    left it: call under the node's lock, when no one else can be copying."""
    stale = sorted(target.parent.glob(f".{target.name}.tmp-*"))
    if target.is_dir() and not (target / _DONE).is_file():
        # An unfinished copy by an older version (this one renames finished copies only).
        stale.append(target)
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale


def _remote_size(loc: Any) -> int:
    """Bytes under an s3:// prefix (the read path: listing)."""
    import pyarrow.fs as pafs

    infos = loc.fs.get_file_info(pafs.FileSelector(loc.path, recursive=True))
    return sum(i.size or 0 for i in infos if i.type == pafs.FileType.File)


def _copy_folder(loc: Any, dest: Path) -> None:
    """Copy an s3:// prefix into a local folder (the read path: the copy)."""
    import pyarrow.fs as pafs

    pafs.copy_files(loc.path, str(dest), source_filesystem=loc.fs,
                    destination_filesystem=pafs.LocalFileSystem())


def fetch_s3(uri: str, s3: S3Settings | None = None) -> tuple[Path, bool]:
    """Copy an s3:// model folder into this node's cache once: (folder, whether this call copied).

    Every engine actor on a node asks for the same folder at start. A file lock beside the
    folder lets one of them copy while the others wait, then all load the one copy. A
    finished folder (it holds the completion marker) is never deleted or rewritten, so no
    process can lose files it is reading; a copy happens in a temp folder of its own and
    appears by one rename, marker included. Under the lock, unfinished copies left by killed
    processes (an engine start that timed out) are removed first, and the disk must hold
    the whole folder before copying starts.
    """
    from persona_gen.storage import resolve

    target = s3_cache_folder(uri, s3)
    if (target / _DONE).is_file():
        return target, False
    target.parent.mkdir(parents=True, exist_ok=True)
    with (target.parent / f".{target.name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or the process dies
        if (target / _DONE).is_file():
            return target, False  # another process copied it while this one waited
        remove_stale_copies(target)
        tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
        loc = resolve(uri, s3)
        try:
            check_free_disk(target.parent, _remote_size(loc), "the model folder", uri)
            tmp.mkdir(parents=True)
            _copy_folder(loc, tmp)
            if not (tmp / "config.json").is_file():
                raise StorageError("no config.json under this prefix: not a Hugging Face "
                                   "model folder", source=uri)
            (tmp / _DONE).write_text(uri + "\n")
            tmp.rename(target)
        except OSError as exc:
            raise StorageError(f"cannot copy the model folder: {exc}", source=uri) from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target, True
