"""Official ACS PUMS layout: files the tests write in the Bureau's exact person-file layout.

The header comes straight from the Bureau's data dictionary in ../shared/census (person
section, in dictionary order, which is the file's column order); values are written as
the Bureau writes them (character codes zero-padded, blanks for N/A).
"""

from __future__ import annotations

import csv
import json
import zipfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from persona_gen.census import build_codebook, codebook
from persona_gen.census.layouts import detect
from persona_gen.census.sample import read_metadata, sample_people
from persona_gen.cli.main import app
from persona_gen.errors import DataError

runner = CliRunner()

ADJINC = {2017: "1011189", 2018: "1013097", 2019: "1010145", 2023: "1019518"}


def person_header(census_dir: Path, year: int) -> list[str]:
    """The Bureau's psam_p*.csv header for `year` (2017-2018: RELP and WKW)."""
    dict_year = 2023 if year >= 2023 else 2019
    path = census_dir / "pums-dictionary" / f"PUMS_Data_Dictionary_{dict_year}.csv"
    with path.open(newline="", encoding="utf-8") as f:
        names = [r[1] for r in csv.reader(f) if r and r[0] == "NAME"]
    start = [i for i, n in enumerate(names) if n == "RT"][1]
    cols = names[start:]
    if year < 2019:
        cols = ["RELP" if c == "RELSHIPP" else "WKW" if c == "WKWN" else c for c in cols]
    return cols


def person(**values: str | int) -> dict[str, str]:
    """An adult Wyoming person; override any variable by its PUMS name."""
    base: dict[str, str | int] = {
        "ST": "56", "PUMA": "00100", "AGEP": 40, "SEX": "2", "PWGTP": 50, "RAC1P": "1",
        "HISP": "01", "SCHL": "21", "ESR": "1", "COW": "1", "INDP": "7380", "OCCP": "1021",
        "PINCP": 50000, "MSP": "1", "POBP": "056", "CIT": "1", "MIL": "4", "DIS": "2",
        "HICOV": "1", "DREM": "2", "DEYE": "2", "DEAR": "2", "LANX": "2", "FER": "2",
        "PAOC": "4", "ANC1P": "032",
    }
    base.update(values)
    return {k: str(v) for k, v in base.items()}


def write_person_csv(path: Path, census_dir: Path, year: int, people: list[dict[str, str]],
                     five_year: bool = False) -> Path:
    header = person_header(census_dir, year)
    state_col = "STATE" if "STATE" in header else "ST"
    with path.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        for i, p in enumerate(people, start=1):
            row = dict(p)
            if "ST" in row and state_col == "STATE":
                row["STATE"] = row.pop("ST")
            # 5-year files number households without the HU/GQ tag.
            serial = f"{year}{i:09d}" if five_year else f"{year}HU{i:07d}"
            row.setdefault("SERIALNO", serial)
            row.setdefault("SPORDER", "01")
            row.setdefault("RT", "P")
            row.setdefault("ADJINC", ADJINC[year])
            row.setdefault("DIVISION", "8")
            row.setdefault("REGION", "4")
            w.writerow([row.get(c, "") for c in header])
    return path


def write_zip(path: Path, members: dict[str, Path]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, src in members.items():
            z.write(src, name)
        z.writestr("ACS2019_PUMS_README.pdf", b"%PDF-1.4 not a csv")
    return path


def _everyone(table) -> list[dict]:
    return sorted(table.to_pylist(), key=lambda r: r["record_id"])


def test_2019_file_with_st_loads_with_labels_and_adjusted_income(census_dir, tmp_path):
    people = [
        person(),
        person(SEX="1", AGEP=67, SCHL="16", ESR="6", COW="", INDP="", OCCP="", PINCP=-5000,
               MSP="3", MIL="2", DIS="1", HICOV="2", LANX="1", LANP="1200", ENG="2", FER="",
               PAOC="", POBP="303", CIT="4", HISP="02", RAC1P="8", ANC1P="210"),
        person(AGEP=12, PINCP="", SCHL="09", ESR="", COW="", INDP="", OCCP="", MSP="", MIL="",
               FER="", PAOC=""),
    ]
    src = write_person_csv(tmp_path / "psam_p56.csv", census_dir, 2019, people)
    table = sample_people([str(src)], n=2, seed=1)
    a, b = _everyone(table)
    assert a["record_id"] == "2019HU0000001-01" and a["source"] == "psam_p56.csv"
    assert a["sex"] == "Female" and a["state"] == "Wyoming" and a["age"] == 40
    assert a["education"] == "Bachelor's degree"
    assert a["industry_category"] == "PRF-Computer Systems Design And Related Services"
    assert a["occupation_category"] == "CMM-Software Developers"
    assert a["employment_status"] == "Civilian employed, at work"
    assert a["class_of_worker"].startswith("Employee of a private for-profit company")
    assert a["marital_status"] == "Now married, spouse present"
    assert a["place_of_birth"] == "Wyoming" and a["citizenship"] == "Born in the U.S."
    assert a["veteran_status"] == "Never served in the military"
    # Household facts live in the housing file, absent here: empty, listed as missing.
    assert a["household_language"] is None and a["family_presence_and_age"] is None
    assert a["ability_to_speak_english"] == "Speaks only English"
    assert a["fertility"] == "Did not give birth within the past 12 months"
    assert a["ancestry"] == "German" and a["race"] == "White alone"
    assert a["hispanic_origin"] == "Not Spanish/Hispanic/Latino"
    # ADJINC 1010145 has 6 implied decimals: 50,000 x 1.010145 = 50,507.25.
    assert a["income"] == 50507
    assert b["income"] == round(-5000 * 1.010145)
    assert b["ability_to_speak_english"] == "Well"
    assert b["place_of_birth"] == "Mexico" and b["citizenship"] == "U.S. citizen by naturalization"
    assert b["veteran_status"] == "On active duty in the past, but not now"
    assert b["industry_category"] is None and b["fertility"] is None
    assert b["race"] == "Some Other Race alone" and b["hispanic_origin"] == "Mexican"
    meta = read_metadata(table.schema)
    assert meta.layout == "pums" and meta.data_years == {"psam_p56.csv": 2019}
    assert meta.missing_attributes == ["household_language", "household_type",
                                       "family_presence_and_age"]
    assert meta.income.adjusted_with_adjinc
    assert meta.population.records == 2  # the 12-year-old is filtered out (adults only)
    assert meta.unlabeled_codes == {}


def test_2023_file_with_state_uses_the_2023_codebook(census_dir, tmp_path):
    people = [person(INDP="7870", OCCP="2310", PINCP=40000, CIT="1"), person(ST="50", AGEP=30)]
    src = write_person_csv(tmp_path / "psam_p56.csv", census_dir, 2023, people)
    assert "STATE" in src.read_text().splitlines()[0].split(",")
    rows = _everyone(sample_people([str(src)], n=2, seed=4))
    assert rows[0]["state"] == "Wyoming" and rows[1]["state"] == "Vermont"
    # INDP 7870 kept its code but changed its label with the 2022 industry codes.
    assert rows[0]["industry_category"] == (
        "EDU-Junior Colleges, Colleges, Universities, And Professional Schools")
    assert rows[0]["citizenship"] == "Born in the United States"
    assert rows[0]["income"] == round(40000 * 1.019518)  # 40,780.72
    only_vt = sample_people([str(src)], n=1, seed=4, states=["VT"])
    assert only_vt.column("state").to_pylist() == ["Vermont"]


def test_zip_archive_streams_its_person_file(census_dir, tmp_path):
    csv_path = write_person_csv(tmp_path / "psam_p56.csv", census_dir, 2019,
                                [person(PWGTP=w, AGEP=20 + w) for w in range(1, 30)])
    archive = write_zip(tmp_path / "csv_pwy.zip", {"psam_p56.csv": csv_path})
    from_zip = sample_people([str(archive)], n=10, seed=7)
    from_csv = sample_people([str(csv_path)], n=10, seed=7)
    assert from_zip.column("record_id").equals(from_csv.column("record_id"))
    assert from_zip.column("source")[0].as_py() == "csv_pwy.zip:psam_p56.csv"
    assert from_zip.column("state").unique().to_pylist() == ["Wyoming"]


def test_many_states_and_years_in_one_sample_via_cli(census_dir, tmp_path):
    wy = write_person_csv(tmp_path / "psam_p56.csv", census_dir, 2019,
                          [person(PWGTP=10 + i) for i in range(20)])
    vt23 = tmp_path / "y2023"
    vt23.mkdir()
    write_person_csv(vt23 / "psam_p50.csv", census_dir, 2023,
                     [person(ST="50", PWGTP=10 + i, INDP="7870") for i in range(20)])
    zipped = write_zip(vt23 / "csv_pvt.zip", {"psam_p50.csv": vt23 / "psam_p50.csv"})
    (vt23 / "psam_p50.csv").unlink()  # the folder now holds only the archive
    out = tmp_path / "s.parquet"
    res = runner.invoke(app, ["census", "sample", "--source", str(wy), "--source", str(vt23),
                              "--n", "30", "--seed", "3", "--to", str(out)])
    assert res.exit_code == 0, res.output
    table = pq.read_table(out)
    meta = read_metadata(table.schema)
    assert meta.data_years == {"psam_p56.csv": 2019, "csv_pvt.zip:psam_p50.csv": 2023}
    assert set(table.column("state").to_pylist()) == {"Wyoming", "Vermont"}
    assert str(zipped) in [str(p) for p in vt23.iterdir()]
    labels = {r["state"]: r["industry_category"] for r in table.to_pylist()}
    assert labels["Wyoming"] == "PRF-Computer Systems Design And Related Services"
    assert labels["Vermont"].startswith("EDU-Junior Colleges")


def test_2017_layout_detected_and_old_occupation_codes_left_unlabelled(census_dir, tmp_path):
    header = person_header(census_dir, 2017)
    assert "RELP" in header and "ST" in header
    layout = detect(header, "auto", "x.csv")
    assert layout.name == "pums" and "2017-2018" in layout.variant
    # 2017 used the 2010 occupation and 2012 industry codes: no shipped dictionary labels
    # them, so they stay null rather than being mislabelled with 2018 codes.
    src = write_person_csv(tmp_path / "psam_p56.csv", census_dir, 2017, [person(), person()])
    rows = sample_people([str(src)], n=2, seed=0).to_pylist()
    assert {r["occupation_category"] for r in rows} == {None}
    assert {r["education"] for r in rows} == {"Bachelor's degree"}
    assert rows[0]["income"] == round(50000 * 1.011189)
    meta = read_metadata(sample_people([str(src)], n=2, seed=0).schema)
    assert meta.unlabeled_codes == {"industry_category": 2, "occupation_category": 2}


def test_five_year_serials_and_forced_layout(census_dir, tmp_path):
    src = write_person_csv(tmp_path / "psam_p56.csv", census_dir, 2019,
                           [person(), person(SPORDER="02")], five_year=True)
    table = sample_people([str(src)], n=2, seed=0, layout="pums")
    assert sorted(table.column("record_id").to_pylist()) == [
        "2019000000001-01", "2019000000002-02"]
    with pytest.raises(DataError, match="layout 'nist' forced with --layout, but the header has none"):
        sample_people([str(src)], n=2, seed=0, layout="nist")


def test_same_person_file_twice_counts_once(census_dir, tmp_path):
    src = write_person_csv(tmp_path / "psam_p56.csv", census_dir, 2019, [person(), person()])
    meta = read_metadata(sample_people([str(src), str(src)], n=2, seed=0).schema)
    assert meta.population.records == 2


def test_shipped_codebook_matches_the_dictionaries(census_dir):
    """The packaged data is what the script builds from ../shared/census today."""
    built = build_codebook.build(census_dir)
    shipped = codebook.load()
    assert json.loads(build_codebook.dump(built)) == shipped
    assert codebook.dictionary_year("INDP", 2021) == 2019
    assert codebook.dictionary_year("INDP", 2023) == 2023
    assert codebook.dictionary_year("OCCP", 2017) is None
    assert codebook.dictionary_year("SCHL", 2017) == 2019
    assert codebook.state_code("wy") == "56" and codebook.state_abbr("06") == "CA"


def housing_header(census_dir: Path, year: int) -> list[str]:
    """The Bureau's psam_h*.csv header for `year` (the dictionary's housing section)."""
    path = census_dir / "pums-dictionary" / f"PUMS_Data_Dictionary_{2023 if year >= 2023 else 2019}.csv"
    with path.open(newline="", encoding="utf-8") as f:
        names = [r[1] for r in csv.reader(f) if r and r[0] == "NAME"]
    first, second = [i for i, n in enumerate(names) if n == "RT"][:2]
    return names[first:second]


def write_housing_csv(path: Path, census_dir: Path, year: int,
                      homes: list[dict[str, str]]) -> Path:
    header = housing_header(census_dir, year)
    with path.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        for home in homes:
            row = {"RT": "H", "DIVISION": "8", "PUMA": "00100", "REGION": "4", "WGTP": "50",
                   "NP": "2", "TYPEHUGQ": "1", "ADJINC": ADJINC[year],
                   ("STATE" if "STATE" in header else "ST"): "56", **home}
            w.writerow([row.get(c, "") for c in header])
    return path


HOMES = {
    # A married couple with children 6 to 17 who speak Spanish at home.
    "HU0000001": {"HHT": "1", "HHL": "2", "FPARC": "2", "HUPAOC": "2"},
    # A man living alone: a non-family household, FPARC blank, HUPAOC says no children.
    "HU0000002": {"HHT": "4", "HHL": "1", "FPARC": "", "HUPAOC": "4"},
}


@pytest.mark.parametrize("year", [2019, 2023])
def test_household_facts_come_from_the_housing_file_for_men_and_women(census_dir, tmp_path,
                                                                      year):
    people = [person(SEX="1", SERIALNO=f"{year}HU0000001", SPORDER="01", PAOC=""),
              person(SEX="2", SERIALNO=f"{year}HU0000001", SPORDER="02", PAOC="2",
                     LANX="1", LANP="1200", ENG="1"),
              person(SEX="1", SERIALNO=f"{year}HU0000002", SPORDER="01", PAOC="")]
    homes = [{"SERIALNO": f"{year}{k}", **v} for k, v in HOMES.items()]
    # A housing record nobody sampled lives there too; it must not disturb the join.
    homes.append({"SERIALNO": f"{year}HU0000009", "HHT": "3", "HHL": "5", "FPARC": "1"})
    if year == 2019:  # plain files side by side
        src = write_person_csv(tmp_path / "psam_p56.csv", census_dir, year, people)
        write_housing_csv(tmp_path / "psam_h56.csv", census_dir, year, homes)
    else:  # the Bureau's archives: csv_pwy.zip with csv_hwy.zip beside it
        p = write_person_csv(tmp_path / "psam_p56.csv", census_dir, year, people)
        h = write_housing_csv(tmp_path / "psam_h56.csv", census_dir, year, homes)
        src = write_zip(tmp_path / "csv_pwy.zip", {"psam_p56.csv": p})
        write_zip(tmp_path / "csv_hwy.zip", {"psam_h56.csv": h})
        p.unlink()
        h.unlink()
    table = sample_people([str(src)], n=3, seed=1)
    rows = {r["record_id"]: r for r in table.to_pylist()}
    husband, wife = rows[f"{year}HU0000001-01"], rows[f"{year}HU0000001-02"]
    alone = rows[f"{year}HU0000002-01"]
    for r in (husband, wife):
        assert r["household_type"] == "Married couple household"
        assert r["household_language"] == "Spanish"  # the household's, not the person's
        assert r["family_presence_and_age"] == "With related children 5 to 17 years only"
    assert husband["sex"] == "Male"  # PAOC (women only) would have left him empty
    assert alone["household_type"] == "Nonfamily household: Male householder: Living alone"
    assert alone["household_language"] == "English only"
    assert alone["family_presence_and_age"] == "No own children present"  # from HUPAOC
    meta = read_metadata(table.schema)
    assert meta.missing_attributes == []
    assert meta.attribute_sources["household_type"] == "HHT (housing record, joined on SERIALNO)"
