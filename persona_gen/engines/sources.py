"""Where a model's weights come from: bundled:NAME, a local folder, s3://bucket/prefix, or a
Hugging Face id (left to vLLM, which downloads and caches it)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from persona_gen.engines import bundled
from persona_gen.errors import ConfigError, StorageError

_DONE = ".persona-gen-complete"


@dataclass(frozen=True)
class Source:
    kind: str
    """'bundled', 'local', 's3' or 'hf'."""
    value: str


def classify(source: str) -> Source:
    if source.startswith("bundled:"):
        return Source("bundled", source.split(":", 1)[1])
    if source.startswith("s3://"):
        return Source("s3", source)
    if source.startswith("file://"):
        return Source("local", source[len("file://"):])
    if source.startswith(("/", "./", "../", "~")) or Path(source).expanduser().is_dir():
        return Source("local", source)
    if "://" in source:
        raise ConfigError(f"unsupported source scheme in '{source}' (use an HF id, a folder, "
                          f"s3:// or bundled:NAME)", source="source")
    return Source("hf", source)


def is_local(source: str) -> bool:
    """True when loading never needs the network (bundled, a folder, an s3 copy)."""
    return classify(source).kind != "hf"


def materialise(source: str) -> str:
    """A path or HF id that vLLM can load; bundled and s3 sources are fetched into the cache."""
    src = classify(source)
    if src.kind == "bundled":
        return str(bundled.ensure(src.value))
    if src.kind == "local":
        folder = Path(src.value).expanduser().resolve()
        if not (folder / "config.json").is_file():
            raise ConfigError(f"'{folder}' is not a Hugging Face model folder (no config.json)",
                              source="source")
        return str(folder)
    if src.kind == "s3":
        return str(fetch_s3(src.value))
    return src.value


def fetch_s3(uri: str) -> Path:
    """Copy an s3:// model folder into the cache once; later loads reuse the copy."""
    import pyarrow.fs as pafs

    from persona_gen.storage import resolve

    loc = resolve(uri)
    target = bundled.cache_dir() / "models" / "s3" / loc.path
    if (target / _DONE).is_file():
        return target
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        pafs.copy_files(loc.path, str(tmp), source_filesystem=loc.fs,
                        destination_filesystem=pafs.LocalFileSystem())
        if not (tmp / "config.json").is_file():
            raise StorageError("no config.json under this prefix: not a Hugging Face model folder",
                               source=uri)
        (tmp / _DONE).write_text(uri + "\n")
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    except OSError as exc:
        raise StorageError(f"cannot copy the model folder: {exc}", source=uri) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
