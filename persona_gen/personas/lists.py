"""The curated lists (our own writing) shipped in personas/data/, loaded once per process."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

LIST_FILES: dict[str, str] = {
    "core_values": "core_values.txt",
    "quirks": "quirks.txt",
    "mannerisms": "mannerisms.txt",
    "categories": "categories.txt",
}
# Items are joined with this in persona text, so it may not occur inside an item.
ITEM_SEPARATOR = "; "


@dataclass(frozen=True)
class CuratedLists:
    core_values: tuple[str, ...]
    quirks: tuple[str, ...]
    mannerisms: tuple[str, ...]
    categories: tuple[str, ...]


def parse_list(text: str, name: str = "list") -> tuple[str, ...]:
    """One item per line; blank lines and '#' comments are skipped.

    Raises ValueError on a duplicate (ignoring case) or an item holding the separator.
    """
    items: list[str] = []
    seen: set[str] = set()
    for lineno, raw in enumerate(text.splitlines(), start=1):
        item = raw.strip()
        if not item or item.startswith("#"):
            continue
        key = item.casefold()
        if key in seen:
            raise ValueError(f"{name}: line {lineno}: duplicate item {item!r}")
        if ITEM_SEPARATOR.strip() in item:
            raise ValueError(f"{name}: line {lineno}: item may not contain ';': {item!r}")
        seen.add(key)
        items.append(item)
    return tuple(items)


def read_list(filename: str) -> tuple[str, ...]:
    text = resources.files("persona_gen.personas").joinpath("data", filename).read_text("utf-8")
    return parse_list(text, filename)


@lru_cache(maxsize=1)
def load_lists() -> CuratedLists:
    return CuratedLists(**{field: read_list(fname) for field, fname in LIST_FILES.items()})
