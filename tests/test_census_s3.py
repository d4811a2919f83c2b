"""Census and prompt inputs on S3 (real SeaweedFS on 127.0.0.1): `census download --to`,
`census sample` from s3://, the bundled excerpt, and a whole echo run whose census archive
and prompt file live in the bucket, driven through the CLI in its own process."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import boto3
import pyarrow.parquet as pq
import pytest
from test_census_download import Served, make_zip, serve

from persona_gen.cli.main import main
from tests.pipeline_helpers import write_config, write_prompt_file

ROOT = Path(__file__).resolve().parents[1]
EXCERPT = ROOT / "data" / "census-excerpt" / "national2019.csv.gz"
EXCERPT_SHA256 = "9e039c8e47c9e998d60f66fd50ec620fc2d0703decdc21f3069c9844fbef979b"


def _s3() -> boto3.client:
    return boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"],
                        region_name=os.environ.get("AWS_REGION", "us-east-1"))


def _put(bucket: str, key: str, body: bytes) -> str:
    _s3().put_object(Bucket=bucket, Key=key, Body=body)
    return f"s3://{bucket}/{key}"


def _excerpt_as_zip() -> bytes:
    """The bundled excerpt as a zip archive holding one CSV, as the Bureau ships its files."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("national2019.csv", gzip.decompress(EXCERPT.read_bytes()))
    return buf.getvalue()


def _sample(capsys: pytest.CaptureFixture[str], out: Path, *sources: str) -> tuple[int, str]:
    args = [a for s in sources for a in ("--source", s)]
    with pytest.raises(SystemExit) as exc:
        main(["census", "sample", *args, "--n", "12", "--seed", "3", "--to", str(out)])
    return int(exc.value.code or 0), capsys.readouterr().err


# ---- the bundled excerpt ----------------------------------------------------------------

def test_bundled_excerpt_is_the_documented_file(tmp_path: Path) -> None:
    raw = gzip.decompress(EXCERPT.read_bytes())
    assert hashlib.sha256(raw).hexdigest() == EXCERPT_SHA256
    assert raw.count(b"\n") == 27_253 + 1
    readme = (EXCERPT.parent / "README.md").read_text()
    assert EXCERPT_SHA256 in readme and "public domain" in readme.lower()
    # Every config that reads the census reads the bundled file or storage, never ../shared.
    for cfg in (ROOT / "jobs" / "configs").glob("*.yaml"):
        assert "shared/" not in cfg.read_text(), cfg


def test_bundled_excerpt_samples_like_a_plain_csv(tmp_path: Path, capsys) -> None:
    plain = tmp_path / "national2019.csv"
    plain.write_bytes(gzip.decompress(EXCERPT.read_bytes()))
    assert _sample(capsys, tmp_path / "gz.parquet", str(EXCERPT))[0] == 0
    assert _sample(capsys, tmp_path / "csv.parquet", str(plain))[0] == 0
    gz, csv = pq.read_table(tmp_path / "gz.parquet"), pq.read_table(tmp_path / "csv.parquet")
    assert gz.num_rows == 12
    assert gz.drop_columns(["source"]).equals(csv.drop_columns(["source"]))


# ---- census sample from s3:// -----------------------------------------------------------

@pytest.mark.s3
def test_sample_reads_gz_and_zip_from_s3_as_from_disk(s3_bucket: str, tmp_path: Path,
                                                      capsys) -> None:
    gz_uri = _put(s3_bucket, "inputs/census/national2019.csv.gz", EXCERPT.read_bytes())
    zip_bytes = _excerpt_as_zip()
    zip_uri = _put(s3_bucket, "inputs/census/nist.zip", zip_bytes)
    (tmp_path / "nist.zip").write_bytes(zip_bytes)
    assert _sample(capsys, tmp_path / "s3gz.parquet", gz_uri) == (0, "")
    assert _sample(capsys, tmp_path / "s3zip.parquet", zip_uri) == (0, "")
    assert _sample(capsys, tmp_path / "disk.parquet", str(EXCERPT)) == (0, "")
    tables = [pq.read_table(tmp_path / f).drop_columns(["source"])
              for f in ("s3gz.parquet", "s3zip.parquet", "disk.parquet")]
    assert tables[0].equals(tables[2]) and tables[1].equals(tables[2])
    # A folder URI finds the Bureau's archives in it (csv_p*.zip), as a local folder does.
    _put(s3_bucket, "inputs/pums/csv_pwy.zip", make_zip(20_000))
    code, err = _sample(capsys, tmp_path / "folder.parquet", f"s3://{s3_bucket}/inputs/pums")
    assert code == 0, err
    assert pq.read_table(tmp_path / "folder.parquet").column("source")[0].as_py() == \
        "csv_pwy.zip:psam_p56.csv"


@pytest.mark.s3
def test_missing_s3_census_is_one_line_naming_the_uri(s3_bucket: str, tmp_path: Path,
                                                      capsys) -> None:
    uri = f"s3://{s3_bucket}/inputs/census/nothing.csv"
    code, err = _sample(capsys, tmp_path / "x.parquet", uri)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 65 and lines == [f"error: {uri}: file not found"], err
    assert not (tmp_path / "x.parquet").exists()


# ---- census download --to s3:// ---------------------------------------------------------

@pytest.fixture
def pums_site() -> Iterator[tuple[Served, str]]:
    state = Served({"/pums/2023/1-Year/csv_pwy.zip": make_zip(60_000)})
    server, base = serve(state)
    try:
        yield state, base
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.s3
def test_download_to_s3_stages_locally_and_uploads_once(s3_bucket: str, tmp_path: Path,
                                                       pums_site, capsys) -> None:
    state, base = pums_site
    to = f"s3://{s3_bucket}/inputs/census"
    argv = ["census", "download", "--year", "2023", "--states", "WY", "--base-url", base,
            "--dest", str(tmp_path / "staging"), "--to", to, "--no-progress", "--no-housing"]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out = capsys.readouterr().out
    assert exc.value.code in (0, None), out
    key = "inputs/census/2023/1-Year/csv_pwy.zip"
    body = _s3().get_object(Bucket=s3_bucket, Key=key)["Body"].read()
    assert body == state.files["/pums/2023/1-Year/csv_pwy.zip"]
    assert f"s3://{s3_bucket}/{key}" in out and "copied" in out
    # Again: nothing downloaded, nothing uploaded.
    etag = _s3().head_object(Bucket=s3_bucket, Key=key)["LastModified"]
    requests = len(state.requests)
    time.sleep(1.1)  # LastModified has one-second resolution
    with pytest.raises(SystemExit):
        main(argv)
    out = capsys.readouterr().out
    assert out.count("already there") == 2, out
    assert len(state.requests) == requests
    assert _s3().head_object(Bucket=s3_bucket, Key=key)["LastModified"] == etag
    # What it wrote is what census.sources then names.
    code, err = _sample(capsys, tmp_path / "p.parquet", f"s3://{s3_bucket}/{key}")
    assert code == 0, err


@pytest.mark.s3
def test_download_to_s3_with_bad_credentials_is_one_line(s3_bucket: str, tmp_path: Path,
                                                         pums_site, capsys, monkeypatch) -> None:
    # (SeaweedFS creates a missing bucket on PUT, unlike AWS, so credentials are what fail.)
    _, base = pums_site
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    to = f"s3://{s3_bucket}/inputs"
    with pytest.raises(SystemExit) as exc:
        main(["census", "download", "--year", "2023", "--states", "WY", "--base-url", base,
              "--dest", str(tmp_path), "--to", to, "--no-progress", "--no-housing"])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert exc.value.code == 65 and len(err) == 1, err
    assert err[0].startswith(f"error: {to}/2023/1-Year/csv_pwy.zip: could not write"), err[0]


# ---- a whole run with its inputs on S3 ---------------------------------------------------

@pytest.mark.s3
@pytest.mark.ray
def test_echo_run_reads_census_zip_and_prompts_from_s3(s3_bucket: str, tmp_path: Path) -> None:
    census_uri = _put(s3_bucket, "inputs/census/2019/nist.zip", _excerpt_as_zip())
    prompts = write_prompt_file(tmp_path / "prompts.jsonl", 10)
    prompts_uri = _put(s3_bucket, "inputs/prism.jsonl", prompts.read_bytes())
    output = f"s3://{s3_bucket}/runs"
    cfg = write_config(tmp_path / "job.yaml", Path("unused"), Path("unused"), output,
                       census={"sources": [census_uri]}, personas={"n": 4},
                       prompts={"source": prompts_uri},
                       plan={"train_pairs_per_persona": 3, "seen_test_pairs_per_persona": 1,
                             "heldout_test_pairs_per_persona": 1})
    # Its own process: the CLI starts (and ends) its own local Ray, as a user's shell would.
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from persona_gen.cli.main import main; "
         "main(sys.argv[1:])", "run", "--config", str(cfg), "--run-id", "s3-inputs"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    s3 = _s3()
    manifest = json.loads(s3.get_object(Bucket=s3_bucket,
                                        Key="runs/s3-inputs/manifest.json")["Body"].read())
    assert manifest["status"] == "complete", manifest.get("status")
    assert manifest["config"]["census"]["sources"] == [census_uri]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket,
                                                  Prefix="runs/s3-inputs/")["Contents"]]
    pairs = [k for k in keys if k.startswith("runs/s3-inputs/feedback/pairs/")]
    assert pairs, keys
    rows = sum(pq.read_table(io.BytesIO(s3.get_object(Bucket=s3_bucket, Key=k)["Body"].read()))
               .num_rows for k in pairs)
    assert rows == manifest["counts"]["plan"]["pairs"] > 0
    personas = pq.read_table(io.BytesIO(s3.get_object(
        Bucket=s3_bucket, Key="runs/s3-inputs/personas/personas.parquet")["Body"].read()))
    assert personas.num_rows == 4
