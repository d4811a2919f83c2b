"""Household facts from the PUMS housing file, joined to sampled people on SERIALNO.

Household type, household language and the presence and age of children are household
facts: official PUMS keeps them in the housing record (HHT, HHL, FPARC, HUPAOC), not in the
person record. The paper (PERSONA, arXiv 2407.17387, personas) lists the attributes but
not how it joined them; reading them from the housing record is our reading of the census
codebook. (The person file's LANX/LANP is the person's own language, and its PAOC exists
for women only, so neither stands in for the household's.)

A housing file is found beside each person file by the Bureau's names: psam_p17.csv ->
psam_h17.csv, csv_pil.zip -> csv_hil.zip (member psam_h17.csv), psam_pusa.csv ->
psam_husa.csv, ss19pil.csv -> ss19hil.csv; or as psam_h* members of the person file's own
zip archive. Only the sampled households are kept while the file streams, so memory stays
at the size of the sample. Sources without a housing file (the NIST excerpt, a lone person
file) keep these attributes empty, and the sample metadata lists them as missing.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Sequence
from pathlib import PurePosixPath

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from persona_gen.census.layouts import Layout
from persona_gen.census.read import Part, _random_access, read_header, stream
from persona_gen.errors import DataError
from persona_gen.storage.uri import Location, resolve

HOUSING_COLUMNS: tuple[str, ...] = ("HHT", "HHL", "FPARC", "HUPAOC")
"""Housing-record variables the attribute map reads (attributes_map.HOUSING_SPECS)."""
_PERSON_NAME = re.compile(r"^(psam_|csv_|ss\d\d)p(.+)$", re.I)
_HOUSING_MEMBER = re.compile(r"^(psam_h|ss\d\dh).*\.csv$", re.I)


def _sibling_name(name: str) -> str | None:
    m = _PERSON_NAME.match(name)
    return f"{m.group(1)}h{m.group(2)}" if m else None


def _housing_members(loc: Location, shown: str) -> list[str]:
    with _random_access(loc, shown) as f, zipfile.ZipFile(f) as archive:
        return sorted(i.filename for i in archive.infolist()
                      if _HOUSING_MEMBER.match(PurePosixPath(i.filename).name))


def housing_parts(part: Part) -> list[Part]:
    """The housing CSVs that belong with one person part ([] when there are none)."""
    loc = part.loc if part.loc is not None else resolve(part.path)
    try:
        if part.member is not None:
            inside = _housing_members(loc, part.path)
            if inside:
                return [Part(part.path, m, loc) for m in inside]
        base = PurePosixPath(loc.path).name
        name = _sibling_name(base)
        if name is None:
            return []
        path = f"{loc.path[: len(loc.path) - len(base)]}{name}"
        info = loc.fs.get_file_info(path)
        if info.type != pafs.FileType.File:
            return []
        shown = part.path[: len(part.path) - len(base)] + name
        sib = Location(loc.fs, path, loc.uri[: len(loc.uri) - len(base)] + name)
        if name.lower().endswith(".zip"):
            return [Part(shown, m, sib) for m in _housing_members(sib, shown)]
        return [Part(shown, None, sib)]
    except (OSError, zipfile.BadZipFile) as exc:
        raise DataError(f"cannot read the housing file beside it ({exc})",
                        source=part.where) from None


def join_households(cands: pa.Table, parts: Sequence[Part]) -> pa.Table:
    """`cands` (with SERIALNO) plus HOUSING_COLUMNS from the housing parts (null where a
    household is not found), streaming each file and keeping only the wanted SERIALNOs."""
    wanted = pa.array(sorted(set(pc.drop_null(cands.column("SERIALNO")).to_pylist())),
                      pa.string())
    found: list[pa.Table] = []
    for hp in parts:
        header = read_header(hp)
        if "SERIALNO" not in header or "WGTP" not in header:
            raise DataError("not a PUMS housing file (needs SERIALNO and WGTP)", source=hp.where)
        layout = Layout("pums", tuple(header))
        for batch in stream(hp, layout, ("SERIALNO", *HOUSING_COLUMNS)):
            t = pa.Table.from_batches([batch])
            t = t.filter(pc.is_in(t.column("SERIALNO"), value_set=wanted))
            if t.num_rows:
                found.append(t)
    columns = {c: pa.nulls(cands.num_rows, pa.string()) for c in HOUSING_COLUMNS}
    if found:
        homes = pa.concat_tables(found, promote_options="permissive")
        at = pc.index_in(cands.column("SERIALNO"), value_set=homes.column("SERIALNO"))
        for c in HOUSING_COLUMNS:
            if c in homes.column_names:
                columns[c] = pc.take(homes.column(c), at).combine_chunks()
    out = cands
    for c, values in columns.items():
        i = out.schema.get_field_index(c)
        out = out.set_column(i, c, values) if i >= 0 else out.append_column(c, values)
    return out
