"""Where a model's weights come from: bundled:NAME, a local or shared-filesystem folder, an
object-store folder (s3://, gs:// or az://bucket/prefix), or a Hugging Face id (left to
vLLM, which downloads and caches it)."""

from __future__ import annotations

import fcntl
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
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


def materialise(source: str, s3: S3Settings | None = None) -> str:
    """A path or HF id that vLLM can load; bundled and s3 sources are fetched into the cache.

    `s3` is the run's storage settings (endpoint, region); default: the environment's.
    """
    src = classify(source)
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


def s3_cache_folder(uri: str, s3: S3Settings | None = None) -> Path:
    """Where an object-store model folder is copied on this node: one folder per store,
    endpoint and path, so two services with the same bucket name never share a copy."""
    scheme, path = uri.split("://", 1)
    # S3 keeps the folder name it always had (.../s3/aws/...), so existing copies stay valid.
    endpoint = store_endpoint(uri, s3) if scheme != "s3" else (
        (s3 or S3Settings()).resolved_endpoint() or "aws")
    host = re.sub(r"[^A-Za-z0-9.-]+", "_", urlparse(endpoint).netloc or endpoint)
    return bundled.cache_dir() / "models" / SCHEMES[scheme] / host / path.strip("/")


def fetch_s3(uri: str, s3: S3Settings | None = None) -> tuple[Path, bool]:
    """Copy an s3:// model folder into this node's cache once: (folder, whether this call copied).

    Every engine actor on a node asks for the same folder at start. A file lock beside the
    folder lets one of them copy while the others wait, then all load the one copy. A
    finished folder (it holds the completion marker) is never deleted or rewritten, so no
    process can lose files it is reading; a copy happens in a temp folder of its own and
    appears by one rename, marker included.
    """
    import pyarrow.fs as pafs

    from persona_gen.storage import resolve

    target = s3_cache_folder(uri, s3)
    if (target / _DONE).is_file():
        return target, False
    target.parent.mkdir(parents=True, exist_ok=True)
    with (target.parent / f".{target.name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or the process dies
        if (target / _DONE).is_file():
            return target, False  # another process copied it while this one waited
        tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)  # this process's own leftover only
        loc = resolve(uri, s3)
        try:
            tmp.mkdir(parents=True)
            pafs.copy_files(loc.path, str(tmp), source_filesystem=loc.fs,
                            destination_filesystem=pafs.LocalFileSystem())
            if not (tmp / "config.json").is_file():
                raise StorageError("no config.json under this prefix: not a Hugging Face "
                                   "model folder", source=uri)
            (tmp / _DONE).write_text(uri + "\n")
            if target.exists():
                # A folder without the marker is an unfinished copy by an older version
                # (this one renames finished copies only): no one loads from it.
                shutil.rmtree(target)
            tmp.rename(target)
        except OSError as exc:
            raise StorageError(f"cannot copy the model folder: {exc}", source=uri) from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target, True
