"""Storage: URIs, atomic objects, Arrow round trips (local and S3), `storage check` errors."""

from __future__ import annotations

import pickle
import socket

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from persona_gen.cli.main import app
from persona_gen.errors import StorageError
from persona_gen.storage import RunRef, objects, resolve

runner = CliRunner()


def _table() -> pa.Table:
    return pa.table({"pair_id": ["a", "b", "c"], "n": [1, 2, 3], "text": ["x", None, "zé"]})


def test_local_uri_forms_resolve_to_the_same_place(tmp_path):
    a, b = resolve(tmp_path / "r"), resolve(f"file://{tmp_path}/r")
    assert a.path == b.path == str(tmp_path / "r")
    assert a.is_local and not a.is_s3


def test_unknown_scheme_is_a_clear_error():
    with pytest.raises(StorageError, match="unsupported scheme 'hdfs://'"):
        resolve("hdfs://bucket/x")
    with pytest.raises(StorageError, match="a gs:// URI needs a bucket"):
        resolve("gs://")


def test_every_store_scheme_resolves_to_its_pyarrow_filesystem(monkeypatch):
    import pyarrow.fs as pafs

    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", "acct")
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "127.0.0.1:1")
    for uri, fs, scheme in (("s3://b/p", pafs.S3FileSystem, "s3"),
                            ("gs://b/p", pafs.GcsFileSystem, "gs"),
                            ("gcs://b/p", pafs.GcsFileSystem, "gs"),
                            ("az://c/p", pafs.AzureFileSystem, "az")):
        loc = resolve(uri)
        assert isinstance(loc.fs, fs) and loc.scheme == scheme and loc.is_object_store
        assert loc.child("x").uri == f"{scheme}://b/p/x".replace("b/", "c/" if scheme == "az"
                                                                 else "b/")
        assert loc.at(loc.path + "/y").uri == f"{loc.uri}/y"
    assert resolve("gs://b/p").endpoint == "http://127.0.0.1:1"


def test_azure_without_an_account_is_one_line(monkeypatch):
    for key in ("AZURE_STORAGE_ACCOUNT_NAME", "AZURE_STORAGE_ACCOUNT",
                "AZURE_STORAGE_CONNECTION_STRING"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(StorageError, match="az:// needs a storage account"):
        resolve("az://container/x")


def test_secrets_are_refused_in_the_storage_config():
    from persona_gen.storage import StorageSettings

    for key in ("account_key", "sas_token", "connection_string", "secret_key"):
        with pytest.raises(ValueError, match="never read from config files"):
            StorageSettings.model_validate({key: "x"})


def test_arrow_round_trip_local(tmp_path):
    loc = resolve(tmp_path / "run" / "feedback" / "part-0.parquet")
    objects.write_table_atomic(loc, _table())
    assert objects.read_table(resolve(tmp_path / "run" / "feedback")).equals(_table())
    # No temporary file is left beside the data.
    assert [p.name for p in (tmp_path / "run" / "feedback").iterdir()] == ["part-0.parquet"]


def test_arrow_round_trip_s3(s3_bucket):
    loc = resolve(f"s3://{s3_bucket}/runs/r1/feedback/part-0.parquet")
    objects.write_table_atomic(loc, _table())
    assert objects.read_table(resolve(f"s3://{s3_bucket}/runs/r1/feedback")).equals(_table())


def test_manifest_json_atomic_on_s3_and_local(s3_bucket, tmp_path):
    for root in (f"s3://{s3_bucket}/runs", str(tmp_path)):
        run = RunRef.at(root, "run-1")
        objects.write_json_atomic(run.manifest, {"ok": True, "n": 3})
        assert objects.read_json(run.manifest) == {"ok": True, "n": 3}
        assert run.child("feedback").uri.endswith("/run-1/feedback")
        # One value, passed whole: it pickles without its filesystem and parses back.
        again = pickle.loads(pickle.dumps(run))
        assert again == run and again.uri == run.uri
        assert RunRef.parse(run.uri) == run


def test_failed_local_write_leaves_no_temporary_file(tmp_path):
    # The final rename fails (a non-empty folder sits at the target): no temp file remains.
    (tmp_path / "m.json").mkdir()
    (tmp_path / "m.json" / "keep").write_text("x")
    with pytest.raises(OSError):
        objects.write_json_atomic(resolve(tmp_path / "m.json"), {"a": 1})
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_bad_run_id_rejected():
    with pytest.raises(Exception, match=r"run id '\.\./x'"):
        RunRef.at("/tmp", "../x")


def test_storage_check_ok_on_s3(s3_bucket):
    res = runner.invoke(app, ["storage", "check", f"s3://{s3_bucket}/prefix"])
    assert res.exit_code == 0, res.output
    assert res.output.startswith(f"OK s3://{s3_bucket}/prefix")
    assert "write, list, read, delete" in res.output


def test_storage_check_ok_local(tmp_path):
    res = runner.invoke(app, ["storage", "check", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert list((tmp_path / "out").iterdir()) == []


def _check_fails(uri: str) -> str:
    from persona_gen.cli.main import main

    with pytest.raises(SystemExit) as ex:
        main(["storage", "check", uri])
    assert ex.value.code != 0
    return str(ex.value)


def test_storage_check_wrong_keys(s3_bucket, monkeypatch, capsys):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    _check_fails(f"s3://{s3_bucket}/p")
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "bad S3 credentials" in err and "not-the-secret" not in err


def test_storage_check_missing_bucket(s3_bucket, capsys):
    _check_fails("s3://no-such-bucket-here/p")
    err = capsys.readouterr().err.strip()
    assert "bucket 'no-such-bucket-here' does not exist" in err and "\n" not in err


def test_storage_check_closed_port(s3_bucket, monkeypatch, capsys):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    _check_fails(f"s3://{s3_bucket}/p")
    err = capsys.readouterr().err.strip()
    assert "cannot reach the S3 endpoint" in err and str(port) in err


def test_storage_check_no_permission(s3_server, s3_bucket, monkeypatch, capsys):
    """Valid credentials that may read but not write: the write is refused by name."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.readonly_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.readonly_secret)
    _check_fails(f"s3://{s3_bucket}/p")
    err = capsys.readouterr().err.strip()
    assert "no permission" in err and "\n" not in err
