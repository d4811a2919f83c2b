"""`census download` against a real HTTP server on 127.0.0.1 that honours Range requests."""

from __future__ import annotations

import http.server
import io
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

from persona_gen.census.download import BASE_URL_ENV, DownloadError, download
from persona_gen.cli.main import app

runner = CliRunner()


def make_zip(size_hint: int = 300_000) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        rows = "".join(f"P,2019HU{i:07d},8,01,00100,4,56,1010145,{i % 90 + 1},{i % 80}\n"
                       for i in range(size_hint // 50))
        z.writestr("psam_p56.csv", "RT,SERIALNO,DIVISION,SPORDER,PUMA,REGION,ST,ADJINC,PWGTP,"
                   "AGEP\n" + rows)
    return buf.getvalue()


@dataclass
class Served:
    files: dict[str, bytes]
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    cut_after: int | None = None
    """Close the connection after this many body bytes (once), to simulate a drop."""
    ignore_range: bool = False
    lie_length: int | None = None
    lie_total: int = 0
    """Added to the total that Content-Range announces."""


def serve(state: Served) -> tuple[http.server.ThreadingHTTPServer, str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            rng = self.headers.get("Range")
            state.requests.append((self.path, rng))
            body = state.files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            start = 0
            if rng and not state.ignore_range:
                start = int(rng.split("=")[1].split("-")[0])
                if start >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.end_headers()
                    return
                self.send_response(206)
                total = len(body) + state.lie_total
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{total}")
            else:
                self.send_response(200)
            chunk = body[start:]
            self.send_header("Content-Length", str(state.lie_length or len(chunk)))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            if state.cut_after is not None:
                cut, state.cut_after = state.cut_after, None
                self.wfile.write(chunk[:cut])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(chunk)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/pums"


@pytest.fixture
def site() -> Iterator[tuple[Served, str]]:
    state = Served({"/pums/2023/1-Year/csv_pwy.zip": make_zip(),
                    "/pums/2023/1-Year/csv_pvt.zip": make_zip(120_000),
                    "/pums/2023/1-Year/csv_hwy.zip": make_zip(50_000),
                    "/pums/2023/1-Year/csv_hvt.zip": make_zip(60_000)})
    server, base = serve(state)
    try:
        yield state, base
    finally:
        server.shutdown()
        server.server_close()


def test_cli_downloads_states_with_env_base_url(site, tmp_path, monkeypatch):
    state, base = site
    monkeypatch.setenv(BASE_URL_ENV, base)
    res = runner.invoke(app, ["census", "download", "--year", "2023", "--period", "1-Year",
                              "--states", "WY,VT", "--dest", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "csv_pwy.zip" in res.output and "downloaded" in res.output
    folder = tmp_path / "2023" / "1-Year"
    assert (folder / "csv_pwy.zip").read_bytes() == state.files["/pums/2023/1-Year/csv_pwy.zip"]
    assert (folder / "csv_pvt.zip").read_bytes() == state.files["/pums/2023/1-Year/csv_pvt.zip"]
    # The housing archives come too: household facts live in them.
    assert (folder / "csv_hwy.zip").read_bytes() == state.files["/pums/2023/1-Year/csv_hwy.zip"]
    assert (folder / "csv_hvt.zip").exists()
    assert not list(folder.glob("*.part"))
    # A second run finds the files and asks the server for nothing.
    before = len(state.requests)
    res = runner.invoke(app, ["census", "download", "--year", "2023", "--period", "1-Year",
                              "--states", "WY,VT", "--dest", str(tmp_path), "--no-progress"])
    assert res.exit_code == 0 and "already there" in res.output
    assert len(state.requests) == before


def test_interrupted_download_resumes_with_range(site, tmp_path):
    state, base = site
    body = state.files["/pums/2023/1-Year/csv_pwy.zip"]
    state.cut_after = 100_000
    with pytest.raises(DownloadError, match="interrupted after 100,000 bytes"):
        download(2023, "1-Year", ["WY"], tmp_path, base=base, housing=False)
    part = tmp_path / "2023" / "1-Year" / "csv_pwy.zip.part"
    assert part.stat().st_size == 100_000
    assert not (tmp_path / "2023" / "1-Year" / "csv_pwy.zip").exists()
    [got] = download(2023, "1-Year", ["WY"], tmp_path, base=base, housing=False)
    assert got.resumed_from == 100_000 and got.path.read_bytes() == body
    assert state.requests[-1] == ("/pums/2023/1-Year/csv_pwy.zip", "bytes=100000-")
    assert not part.exists()


def test_server_ignoring_range_restarts_cleanly(site, tmp_path):
    state, base = site
    body = state.files["/pums/2023/1-Year/csv_pwy.zip"]
    part = tmp_path / "2023" / "1-Year" / "csv_pwy.zip.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(body[:5000])
    state.ignore_range = True
    [got] = download(2023, "1-Year", ["WY"], tmp_path, base=base, housing=False)
    assert got.resumed_from == 0 and got.path.read_bytes() == body


def test_size_mismatch_keeps_part_and_says_so(site, tmp_path):
    state, base = site
    body = state.files["/pums/2023/1-Year/csv_pvt.zip"]
    # The server announces more bytes than it sends: the client must not accept the file.
    state.lie_length = len(body) + 10
    state.cut_after = len(body)
    with pytest.raises(DownloadError) as exc:
        download(2023, "1-Year", ["VT"], tmp_path, base=base, housing=False)
    assert "interrupted" in str(exc.value) or "size mismatch" in str(exc.value)
    assert not (tmp_path / "2023" / "1-Year" / "csv_pvt.zip").exists()
    assert (tmp_path / "2023" / "1-Year" / "csv_pvt.zip.part").stat().st_size == len(body)
    # Honest again, the server has nothing more to send (416): the bytes kept are whole.
    state.lie_length = None
    [got] = download(2023, "1-Year", ["VT"], tmp_path, base=base, housing=False)
    assert got.path.read_bytes() == body


def test_total_announced_by_content_range_is_checked(site, tmp_path):
    state, base = site
    body = state.files["/pums/2023/1-Year/csv_pwy.zip"]
    part = tmp_path / "2023" / "1-Year" / "csv_pwy.zip.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(body[:1000])
    state.lie_total = 5
    with pytest.raises(DownloadError, match=rf"size mismatch: have {len(body):,} bytes, the "
                       rf"server announced {len(body) + 5:,}"):
        download(2023, "1-Year", ["WY"], tmp_path, base=base, housing=False)
    assert not (tmp_path / "2023" / "1-Year" / "csv_pwy.zip").exists()


def test_missing_archive_and_bad_state_are_one_line_errors(site, tmp_path, capsys):
    from persona_gen.cli.main import main

    _, base = site
    for args, where, problem in (
        (["--states", "WY", "--year", "2019"], f"{base}/2019/1-Year/csv_pwy.zip", "HTTP 404"),
        (["--states", "XX", "--year", "2023"], "--states", "unknown state 'XX'"),
        (["--states", "WY", "--year", "2023", "--period", "3-Year"], "--period",
         "unknown period '3-Year'"),
    ):
        with pytest.raises(SystemExit) as exc:
            main(["census", "download", *args, "--dest", str(tmp_path), "--base-url", base,
                  "--no-progress"])
        err = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
        assert exc.value.code == 65 and len(err) == 1, err
        assert err[0].startswith(f"error: {where}: ") and problem in err[0], err[0]
    assert not any(Path(tmp_path).rglob("*.zip"))
