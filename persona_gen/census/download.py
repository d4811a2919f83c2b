"""Download the Bureau's PUMS archives, person (csv_p{st}.zip) and housing (csv_h{st}.zip),
resumably.

URL: {base_url}/{year}/{period}/csv_{p|h}{st}.zip. The housing archive carries the
household facts (household type and language, children present) that the sampler joins to
each person on SERIALNO (persona_gen.census.housing); `housing=False` skips it. A download writes to `<name>.part`; when
interrupted, the next run asks for the rest with an HTTP Range request and appends. The
finished file must match the size the server announced (Content-Length / Content-Range)
and open as a zip archive before it is renamed into place, so a truncated file never
looks finished.

`publish` then copies finished archives to any storage URI (`census download --to
s3://bucket/inputs/census`), keeping the DEST/YEAR/PERIOD/csv_p{st}.zip layout: the local
folder is the resumable staging area, and an object already there with the same size is
not sent again.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pyarrow.fs as pafs

from persona_gen.census import codebook
from persona_gen.errors import StorageError, UserError
from persona_gen.storage import objects
from persona_gen.storage.settings import S3Settings
from persona_gen.storage.uri import resolve

DEFAULT_BASE_URL = "https://www2.census.gov/programs-surveys/acs/data/pums"
BASE_URL_ENV = "PERSONA_GEN_PUMS_BASE_URL"
PERIODS = ("1-Year", "5-Year")

# (file name, bytes done, bytes total or None) -> None; called as bytes arrive.
Progress = Callable[[str, int, "int | None"], None]


class DownloadError(UserError):
    """A download failed in a way the user can act on (URL, network, size)."""


@dataclass(frozen=True)
class Downloaded:
    path: Path
    size: int
    resumed_from: int
    skipped: bool


def base_url(explicit: str | None = None) -> str:
    return (explicit or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL).rstrip("/")


def state_slugs(states: Sequence[str]) -> list[str]:
    """'WY,VT' / ['wy', 'vt'] / 'us' -> ['wy', 'vt'] (the Bureau's lower-case codes)."""
    out: list[str] = []
    for text in states:
        for item in str(text).split(","):
            item = item.strip()
            if not item:
                continue
            if item.lower() == "us":  # the national archive, csv_pus.zip
                out.append("us")
                continue
            code = codebook.state_code(item)
            abbr = codebook.state_abbr(code) if code else None
            if not abbr:
                raise UserError(f"unknown state '{item}' (use two-letter codes like WY, or US)",
                                source="--states")
            out.append(abbr.lower())
    if not out:
        raise UserError("give at least one state, e.g. --states WY,VT", source="--states")
    return list(dict.fromkeys(out))


def archive_url(base: str, year: int, period: str, state: str, kind: str = "p") -> str:
    """kind: 'p' for the person archive, 'h' for the housing archive."""
    if period not in PERIODS:
        raise UserError(f"unknown period '{period}' (expected {' or '.join(PERIODS)})",
                        source="--period")
    return f"{base.rstrip('/')}/{year}/{period}/csv_{kind}{state}.zip"


def _total_from(resp: httpx.Response, offset: int) -> int | None:
    crange = resp.headers.get("content-range", "")
    if "/" in crange and crange.rsplit("/", 1)[1].strip().isdigit():
        return int(crange.rsplit("/", 1)[1])
    length = resp.headers.get("content-length")
    if length and length.isdigit():
        return int(length) + (offset if resp.status_code == 206 else 0)
    return None


def fetch(url: str, dest: Path, client: httpx.Client, progress: Progress | None = None) -> Downloaded:
    """Download `url` to `dest`, resuming `dest.part` if present."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    if dest.exists() and not part.exists():
        return Downloaded(dest, dest.stat().st_size, 0, skipped=True)
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        with client.stream("GET", url, headers=headers) as resp:
            if resp.status_code == 416 and offset:
                # Nothing left to send: the .part is already complete (checked below).
                total: int | None = offset
                mode, start = "ab", offset
            elif resp.status_code in (200, 206):
                resumed = resp.status_code == 206
                start = offset if resumed else 0  # a server that ignores Range sends it all
                mode = "ab" if resumed else "wb"
                total = _total_from(resp, start)
                done = start
                with part.open(mode) as out:
                    # No chunk size: write each piece as it arrives, so a dropped
                    # connection loses nothing already received.
                    for chunk in resp.iter_bytes():
                        out.write(chunk)
                        done += len(chunk)
                        if progress:
                            progress(dest.name, done, total)
            else:
                raise DownloadError(f"HTTP {resp.status_code} from the server", source=url)
    except httpx.HTTPError as exc:
        have = part.stat().st_size if part.exists() else 0
        raise DownloadError(
            f"download interrupted after {have:,} bytes ({type(exc).__name__}: {exc}); run the "
            "same command again to resume",
            source=url,
        ) from None
    size = part.stat().st_size
    if total is not None and size != total:
        raise DownloadError(
            f"size mismatch: have {size:,} bytes, the server announced {total:,}; run again "
            "to resume",
            source=url,
        )
    if not zipfile.is_zipfile(part):
        part.unlink()
        raise DownloadError("the server sent something that is not a zip archive; removed it",
                            source=url)
    part.replace(dest)
    return Downloaded(dest, size, start, skipped=False)


def download(
    year: int,
    period: str,
    states: Sequence[str],
    dest: str | os.PathLike[str],
    *,
    base: str | None = None,
    progress: Progress | None = None,
    timeout_s: float = 60.0,
    housing: bool = True,
) -> list[Downloaded]:
    if not 2005 <= year <= 2100:
        raise UserError(f"year {year} is outside the ACS PUMS range", source="--year")
    root = base_url(base)
    slugs = state_slugs(states)
    kinds = ("p", "h") if housing else ("p",)
    urls = [archive_url(root, year, period, s, k) for s in slugs for k in kinds]
    out = []
    timeout = httpx.Timeout(timeout_s, read=timeout_s)
    with httpx.Client(follow_redirects=True, timeout=timeout) as client:
        for url in urls:
            name = url.rsplit("/", 1)[1]
            out.append(fetch(url, Path(dest) / str(year) / period / name, client, progress))
    return out


@dataclass(frozen=True)
class Published:
    uri: str
    size: int
    skipped: bool


def publish(files: Sequence[Downloaded], staging: str | os.PathLike[str], to: str,
            s3: S3Settings | None = None) -> list[Published]:
    """Copy downloaded archives to `to` (a path or URI), at their path under `staging`.

    Each archive becomes visible only once complete (`objects.upload_file`, on every store),
    so readers never see half an archive; a failed copy is re-sent by the next run.
    """
    root = Path(staging).resolve()
    dest = resolve(to, s3)
    out: list[Published] = []
    for f in files:
        rel = f.path.resolve().relative_to(root).as_posix()
        target = dest.child(rel)
        try:
            info = target.fs.get_file_info(target.path)
            if info.type == pafs.FileType.File and info.size == f.size:
                out.append(Published(target.uri, f.size, skipped=True))
                continue
            objects.upload_file(f.path, target)
        except OSError as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise StorageError(f"could not write the archive there ({first}); check the URI "
                               "and credentials with `persona-gen storage check`",
                               source=target.uri) from None
        out.append(Published(target.uri, f.size, skipped=False))
    return out
