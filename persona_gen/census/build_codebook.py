"""Build the packaged codebook (data/codebook.json) from the Census data dictionaries.

Run from the repository root:

    .venv/bin/python -m persona_gen.census.build_codebook --census-dir DIR

Inputs: the Bureau's PUMS data dictionaries in CSV form (`PUMS_Data_Dictionary_YYYY.csv`,
rows `NAME,var,type,len,label` and `VAL,var,type,len,lo,hi,label`) and the NIST excerpt's
`data_dictionary.json`. Output: only the variables the census mapping uses, as
`{code: label}` tables with codes normalised (leading zeros dropped), plus the official
person-file column order of each dictionary year, so the package never needs DIR.
DIR holds `pums-dictionary/` and `nist-acs-2019/data_dictionary.json`.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from pathlib import Path
from typing import Any

from persona_gen.census.codes import normalize_code

# Person-file variables the mapping labels (see attributes_map.py), and the housing-file
# ones joined on SERIALNO (HHT, HHL, FPARC, HUPAOC; see housing.py).
PUMS_VARIABLES: tuple[str, ...] = (
    "ST", "STATE", "SEX", "RAC1P", "HISP", "ANC1P", "LANX", "LANP", "SCHL", "ESR", "COW",
    "INDP", "OCCP", "MSP", "PAOC", "POBP", "CIT", "MIL", "DIS", "HICOV", "DREM", "DEYE",
    "DEAR", "ENG", "FER", "HHT", "HHL", "FPARC", "HUPAOC",
)
NIST_VARIABLES: tuple[str, ...] = (
    "SEX", "MSP", "HISP", "RAC1P", "EDU", "INDP_CAT", "DREM", "DEYE", "DEAR", "NOC",
    "PINCP_DECILE", "HOUSING_TYPE", "OWN_RENT",
)

_DICT_NAME = re.compile(r"PUMS_Data_Dictionary_(\d{4})\.csv$")
_BLANK = re.compile(r"^b+$")


def _read_rows(path: Path) -> list[list[str]]:
    # The 2019 file quotes every field, the 2023 one only where needed; csv handles both.
    with path.open(encoding="utf-8", errors="replace", newline="") as f:
        return [row for row in csv.reader(f) if row]


def parse_pums_dictionary(path: Path) -> tuple[dict[str, dict[str, str]], list[str]]:
    """({var: {code: label}} for the variables we use, person-file column order)."""
    rows = _read_rows(path)
    names = [r[1] for r in rows if r[0] == "NAME"]
    # The dictionary lists the housing record, then the person record; each starts at RT.
    starts = [i for i, n in enumerate(names) if n == "RT"]
    if len(starts) < 2:
        raise SystemExit(f"{path}: expected a housing and a person section (two RT entries)")
    person_columns = names[starts[1]:]
    tables: dict[str, dict[str, str]] = {}
    for r in rows:
        if r[0] != "VAL" or len(r) < 7 or r[1] not in PUMS_VARIABLES:
            continue
        lo, hi, label = r[4].strip(), r[5].strip(), r[6].strip()
        # Ranges (lo != hi) describe numeric spans, not codes; blanks mean N/A -> null.
        if lo != hi or _BLANK.match(lo):
            continue
        tables.setdefault(r[1], {})[normalize_code(lo)] = label
    return tables, person_columns


def parse_nist_dictionary(path: Path) -> dict[str, dict[str, str]]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    tables: dict[str, dict[str, str]] = {}
    for var in NIST_VARIABLES:
        values = data.get(var, {}).get("values", {})
        # "N" is the excerpt's null marker, "min"/"max" describe numeric ranges.
        tables[var] = {
            normalize_code(code): str(label).strip()
            for code, label in values.items()
            if code not in ("N", "min", "max")
        }
    return tables


def build(census_dir: Path) -> dict[str, Any]:
    dict_dir = census_dir / "pums-dictionary"
    pums: dict[str, Any] = {}
    columns: dict[str, list[str]] = {}
    sources: list[str] = []
    for path in sorted(dict_dir.glob("PUMS_Data_Dictionary_*.csv")):
        m = _DICT_NAME.search(path.name)
        if not m:
            continue
        tables, person_columns = parse_pums_dictionary(path)
        pums[m.group(1)] = tables
        columns[m.group(1)] = person_columns
        sources.append(f"pums-dictionary/{path.name}")
    if not pums:
        raise SystemExit(f"no PUMS_Data_Dictionary_YYYY.csv found in {dict_dir}")
    nist_path = census_dir / "nist-acs-2019" / "data_dictionary.json"
    sources.append("nist-acs-2019/data_dictionary.json")
    return {
        "format": 1,
        "generated_from": sources,
        "pums": pums,
        "pums_person_columns": columns,
        "nist": parse_nist_dictionary(nist_path),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--census-dir", type=Path, required=True,
                        help="folder with pums-dictionary/ and nist-acs-2019/")
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).resolve().parent / "data" / "codebook.json")
    args = parser.parse_args(argv)
    book = build(args.census_dir)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(dump(book), encoding="utf-8")
    n_codes = sum(len(t) for v in book["pums"].values() for t in v.values())
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes, "
          f"PUMS years {', '.join(book['pums'])}, {n_codes:,} PUMS codes)")


def dump(book: dict[str, Any]) -> str:
    """Compact JSON with sorted keys, so a rebuild from the same inputs is byte-identical."""
    return json.dumps(book, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"


if __name__ == "__main__":
    main()
