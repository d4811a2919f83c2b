"""Bad census input: one line `error: PATH: problem`, exit 65, and nothing written."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from test_census_pums import person, person_header, write_person_csv

from persona_gen.cli.main import main


def run_sample(capsys, tmp_path: Path, *args: str) -> tuple[int, str, Path]:
    out = tmp_path / "out" / "personas.parquet"
    with pytest.raises(SystemExit) as exc:
        main(["census", "sample", *args, "--n", "5", "--seed", "1", "--to", str(out)])
    err = capsys.readouterr().err
    return int(exc.value.code or 0), err, out


def assert_one_line_error(code: int, err: str, out: Path, where: str, problem: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 65, err
    assert len(lines) == 1, err
    assert lines[0].startswith(f"error: {where}: "), lines[0]
    assert problem in lines[0], lines[0]
    assert not out.exists() and not out.parent.exists()


def test_missing_person_weight(census_dir, tmp_path, capsys):
    src = tmp_path / "psam_p56.csv"
    header = [c for c in person_header(census_dir, 2019) if c != "PWGTP"]
    src.write_text(",".join(header) + "\n" + ",".join("1" for _ in header) + "\n")
    code, err, out = run_sample(capsys, tmp_path, "--source", str(src))
    assert_one_line_error(code, err, out, str(src), "missing column PWGTP (the person weight)")


def test_missing_person_weight_nist(census_dir, tmp_path, capsys):
    lines = (census_dir / "nist-acs-2019" / "ma2019.csv").read_text().splitlines()[:20]
    cols = lines[0].split(",")
    drop = cols.index("PWGTP")
    src = tmp_path / "ma_no_weight.csv"
    src.write_text("\n".join(",".join(v for i, v in enumerate(line.split(",")) if i != drop)
                             for line in lines) + "\n")
    code, err, out = run_sample(capsys, tmp_path, "--source", str(src))
    assert_one_line_error(code, err, out, str(src), "missing column PWGTP")


def test_non_numeric_age(census_dir, tmp_path, capsys):
    src = write_person_csv(tmp_path / "psam_p56.csv", census_dir, 2019,
                           [person(), person(AGEP="forty"), person()])
    code, err, out = run_sample(capsys, tmp_path, "--source", str(src))
    assert_one_line_error(code, err, out, str(src),
                          "column AGEP has a non-numeric value 'forty' on line 3")


def test_empty_file_and_header_only_file(census_dir, tmp_path, capsys):
    empty = tmp_path / "psam_p56.csv"
    empty.write_bytes(b"")
    code, err, out = run_sample(capsys, tmp_path, "--source", str(empty))
    assert_one_line_error(code, err, out, str(empty), "empty file (no header line)")
    header_only = write_person_csv(tmp_path / "psam_p50.csv", census_dir, 2019, [])
    code, err, out = run_sample(capsys, tmp_path, "--source", str(header_only))
    assert_one_line_error(code, err, out, str(header_only), "no records")


def test_corrupt_and_truncated_zip(census_dir, tmp_path, capsys):
    junk = tmp_path / "csv_pwy.zip"
    junk.write_bytes(b"PK\x03\x04 this is not really a zip archive" * 10)
    code, err, out = run_sample(capsys, tmp_path, "--source", str(junk))
    assert_one_line_error(code, err, out, str(junk), "not a readable zip archive")

    csv_path = write_person_csv(tmp_path / "psam_p56.csv", census_dir, 2019,
                                [person() for _ in range(200)])
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w", zipfile.ZIP_DEFLATED) as z:
        z.write(csv_path, "psam_p56.csv")
    cut = tmp_path / "csv_pvt.zip"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    code, err, out = run_sample(capsys, tmp_path, "--source", str(cut))
    assert_one_line_error(code, err, out, str(cut), "not a readable zip archive")


def test_zip_member_with_bad_crc(census_dir, tmp_path, capsys):
    csv_path = write_person_csv(tmp_path / "psam_p56.csv", census_dir, 2019,
                                [person() for _ in range(50)])
    archive = tmp_path / "csv_pwy.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as z:
        z.write(csv_path, "psam_p56.csv")
    data = bytearray(archive.read_bytes())
    at = data.index(b"2019HU0000030")
    data[at:at + 4] = b"2018"  # flip stored bytes: the CRC no longer matches
    archive.write_bytes(bytes(data))
    code, err, out = run_sample(capsys, tmp_path, "--source", str(archive))
    assert_one_line_error(code, err, out, f"{archive}:psam_p56.csv", "corrupt zip archive")


def test_unknown_layout_header(tmp_path, capsys):
    src = tmp_path / "people.csv"
    src.write_text("name,age,weight\nAda,36,10\n")
    code, err, out = run_sample(capsys, tmp_path, "--source", str(src))
    assert_one_line_error(code, err, out, str(src), "unknown layout")


def test_unknown_layout_option(census_dir, tmp_path, capsys):
    src = census_dir / "nist-acs-2019" / "ma2019.csv"
    code, err, out = run_sample(capsys, tmp_path, "--source", str(src), "--layout", "acs")
    assert_one_line_error(code, err, out, "--layout", "unknown layout 'acs'")


def test_missing_file_and_housing_file(census_dir, tmp_path, capsys):
    code, err, out = run_sample(capsys, tmp_path, "--source", str(tmp_path / "nope.csv"))
    assert_one_line_error(code, err, out, str(tmp_path / "nope.csv"), "file not found")
    housing = tmp_path / "psam_h56.csv"
    housing.write_text("RT,SERIALNO,DIVISION,PUMA,REGION,ST,ADJHSG,ADJINC,WGTP,NP\n"
                       "H,2019HU0000001,8,00100,4,56,1000000,1010145,50,1\n")
    code, err, out = run_sample(capsys, tmp_path, "--source", str(housing))
    assert_one_line_error(code, err, out, str(housing), "PUMS housing file")


def test_ragged_row(census_dir, tmp_path, capsys):
    src = write_person_csv(tmp_path / "psam_p56.csv", census_dir, 2019, [person(), person()])
    with src.open("a") as f:
        f.write("P,2019HU0000009,8,01\n")
    code, err, out = run_sample(capsys, tmp_path, "--source", str(src))
    assert_one_line_error(code, err, out, str(src), "not a valid CSV file after")
    assert "Expected 288 columns, got 4" in err and len(err) < 400
