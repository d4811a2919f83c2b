"""Human study round trip: export sheets, fill them in, role-play, import, kappa."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from html.parser import HTMLParser

import pyarrow as pa
import pytest
from test_bench_data import bench_setup, personas_table, prompts_table
from typer.testing import CliRunner

from persona_gen.bench import layout as L
from persona_gen.bench.human import agreement, majority_vote, ratings_table, sheet_html
from persona_gen.bench.layout import BenchLayout
from persona_gen.bench.requests import build_requests
from persona_gen.bench.run import run_bench, write_outputs
from persona_gen.cli.main import app
from persona_gen.errors import DataError
from persona_gen.storage.uri import resolve

runner = CliRunner()


@pytest.fixture
def bench_run(tmp_path) -> str:
    """A finished tiny bench (echo engine) in <tmp>/run/bench; returns the run URI."""
    from persona_gen.engines.factory import create_engine

    cfg, stages = bench_setup("echo", models=["echo"], modes=["baseline", "summary"], k=1,
                              prompt_split=None, bootstrap_samples=50)
    requests = build_requests(personas_table(), prompts_table(), cfg, seed=0)
    engine = create_engine("echo")
    out = run_bench(requests, cfg, stages, lambda _n: engine, seed=0)
    run_uri = str(tmp_path / "run")
    write_outputs(BenchLayout(resolve(run_uri).child("bench")), out)
    return run_uri


def _fill(sheet_csv, dest, rater, pick):
    """A rater fills the exported CSV: `pick(row_index, row) -> 'A' | 'B' | ''`."""
    with open(sheet_csv, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for i, row in enumerate(rows):
        row["rater"] = rater
        row["choice"] = pick(i, row)
        row["justification"] = f"{rater}: as this person I want {row['choice'] or 'neither'}"
    with open(dest, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return rows


def test_sheet_round_trip_with_majority_and_kappa(tmp_path, bench_run):
    out = tmp_path / "sheets"
    res = runner.invoke(app, ["bench", "export-sheets", "--run", bench_run, "--model", "echo",
                              "--mode-a", "baseline", "--mode-b", "summary", "--personas", "3",
                              "--questions", "2", "--to", str(out)])
    assert res.exit_code == 0, res.output
    assert "6 items for 3 personas" in res.output
    html = (out / "sheets.html").read_text()
    assert html.count('class="item"') == 6 and "Download ratings (CSV)" in html

    # Four raters; items 0-2 are unanimous A, B, A; item 3 is a 2-2 tie; items 4-5 are 3-1.
    plan = {0: "AAAA", 1: "BBBB", 2: "AAAA", 3: "AABB", 4: "BBBA", 5: "AAAB"}
    files = []
    for r in range(4):
        dest = tmp_path / f"rater{r}.csv"
        rows = _fill(out / "sheets.csv", dest, f"rater{r}", lambda i, _row, r=r: plan[i][r])
        files.append(str(dest))
    item_ids = [row["item_id"] for row in rows]

    # Without role-player choices the import still records the votes.
    res = runner.invoke(app, ["bench", "import-sheets", "--run", bench_run, *files])
    assert res.exit_code == 0, res.output
    assert "24 ratings from 4 raters on 6 items (1 tied" in res.output

    res = runner.invoke(app, ["bench", "roleplay", "--run", bench_run, "--model", "echo"])
    assert res.exit_code == 0, res.output
    assert "x 3 variant(s)" in res.output  # full, summary, cot
    res = runner.invoke(app, ["bench", "import-sheets", "--run", bench_run, *files])
    assert res.exit_code == 0, res.output
    assert "kappa" in res.output and "echo" in res.output
    print(res.output)

    bench = BenchLayout(resolve(bench_run).child("bench"))
    majority = {r["item_id"]: r for r in bench.read(L.HUMAN_MAJORITY).to_pylist()}
    expected = {0: "A", 1: "B", 2: "A", 3: None, 4: "B", 5: "A"}
    assert {i: majority[item_ids[i]]["majority"] for i in range(6)} == expected
    assert majority[item_ids[3]]["tie"] and majority[item_ids[3]]["votes_a"] == 2

    # The printed kappa is the one computed by hand from the stored choices.
    stored = bench.read(L.ROLEPLAY).to_pylist()
    assert {r["roleplay_variant"] for r in stored} == {"full", "summary", "cot"}
    # The reasoning variants keep their notes; the letter alone has none.
    assert all(r["roleplay_notes"] is not None for r in stored if r["roleplay_variant"] != "full")
    roleplay = {r["item_id"]: r["choice"] for r in stored if r["roleplay_variant"] == "full"}
    agreements = {r["roleplay_variant"]: r for r in bench.read(L.HUMAN_AGREEMENT).to_pylist()}
    assert set(agreements) == {"full", "summary", "cot"}
    agree = agreements["full"]
    human = [expected[i] for i in range(6) if expected[i]]
    model = [roleplay[item_ids[i]] for i in range(6) if expected[i]]
    from persona_gen.bench.metrics import cohen_kappa

    assert agree["items"] == 5 and agree["ties_excluded"] == 1
    assert agree["kappa"] == pytest.approx(cohen_kappa(human, model), nan_ok=True)

    # Kappa per persona: each persona's items on their own, as computed by hand.
    items = {r["item_id"]: r["persona_id"] for r in bench.read(L.HUMAN_ITEMS).to_pylist()}
    per = {(r["roleplay_variant"], r["persona_id"]): r
           for r in bench.read(L.HUMAN_PERSONA_AGREEMENT).to_pylist()}
    for pid in set(items.values()):
        mine = [i for i in range(6) if expected[i] and items[item_ids[i]] == pid]
        if not mine:
            continue
        row = per[("full", pid)]
        assert row["items"] == len(mine)
        assert row["kappa"] == pytest.approx(cohen_kappa(
            [expected[i] for i in mine], [roleplay[item_ids[i]] for i in mine]), nan_ok=True)

    # `bench report` shows the human agreement section too, with the per-persona spread.
    res = runner.invoke(app, ["bench", "report", "--run", bench_run])
    assert res.exit_code == 0 and "Human majority vs role-playing models" in res.output
    md = (resolve(bench_run).child("bench", "report", "report.md"))
    from persona_gen.storage.objects import read_bytes

    assert "### Kappa per persona" in read_bytes(md).decode()


def test_sheets_default_to_original_against_revision_from_the_runs_pairs(tmp_path):
    from persona_gen.bench.human import build_pair_items
    from persona_gen.storage.objects import write_table_atomic

    pairs = pa.Table.from_pylist([
        {"pair_id": f"{p}-{q}", "persona_id": p, "prompt_id": q, "persona": f"I am {p}.",
         "instruction": f"Question {q}?", "original": f"original {p}-{q}",
         "critique": "c", "data": f"revision {p}-{q}"}
        for p in ("p1", "p2", "p3") for q in ("q1", "q2", "q3")])
    items = build_pair_items(pairs, personas=2, questions=2, seed=0).to_pylist()
    assert len(items) == 4 and len({r["persona_id"] for r in items}) == 2
    for r in items:
        assert {r["source_a"], r["source_b"]} == {"original", "revision"}
        text = {r["source_a"]: r["answer_a"], r["source_b"]: r["answer_b"]}
        key = f"{r['persona_id']}-{r['prompt_id']}"
        assert text == {"original": f"original {key}", "revision": f"revision {key}"}
        assert r["persona_text"] == f"I am {r['persona_id']}." and r["question"].endswith("?")
    # Both orders occur (a stable coin per item against position bias).
    assert len({r["source_a"] for r in build_pair_items(pairs, 3, 3, 0).to_pylist()}) == 2

    # The CLI's default: the run's feedback/pairs, no --model needed.
    run_uri = str(tmp_path / "run")
    write_table_atomic(resolve(run_uri).child("feedback", "pairs", "part-0.parquet"), pairs)
    res = runner.invoke(app, ["bench", "export-sheets", "--run", run_uri, "--personas", "2",
                              "--questions", "3"])
    assert res.exit_code == 0, res.output
    assert "6 items for 2 personas" in res.output
    res = runner.invoke(app, ["bench", "export-sheets", "--run", str(tmp_path / "none")])
    assert res.exit_code != 0


def test_majority_and_agreement_by_hand():
    ratings = pa.Table.from_pylist([
        {"rater": r, "item_id": i, "choice": c, "justification": "", "source": "x"}
        for i, votes in {"i1": "AAB", "i2": "BBA", "i3": "AB", "i4": "AAA"}.items()
        for r, c in zip("xyz", votes, strict=False)
    ])
    maj = {r["item_id"]: r["majority"] for r in majority_vote(ratings).to_pylist()}
    assert maj == {"i1": "A", "i2": "B", "i3": None, "i4": "A"}
    roleplay = pa.Table.from_pylist([
        {"item_id": i, "roleplay_model": "m", "roleplay_variant": "full", "choice": c}
        for i, c in {"i1": "A", "i2": "A", "i3": "A", "i4": "A"}.items()])
    row = agreement(majority_vote(ratings), roleplay).to_pylist()[0]
    # items i1, i2, i4: human A,B,A vs model A,A,A -> p_o = 2/3, p_e = 2/3*1 + 1/3*0 -> 0
    assert row["items"] == 3 and row["kappa"] == pytest.approx(0.0)
    assert row["agreement"] == pytest.approx(2 / 3)


def test_bad_sheets_are_reported_with_file_and_row(tmp_path):
    bad = tmp_path / "r.csv"
    bad.write_text("item_id,rater,choice\nabc,ann,C\n")
    with pytest.raises(DataError, match=r"r\.csv: row 2: 'choice'"):
        ratings_table([bad])
    twice = tmp_path / "twice.csv"
    twice.write_text("item_id,rater,choice\nabc,ann,A\nabc,ann,b\n")
    with pytest.raises(DataError, match="rated item abc twice"):
        ratings_table([twice])
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("item_id,rater,choice\nzzz,ann,A\n")
    with pytest.raises(DataError, match="unknown item_id zzz"):
        ratings_table([unknown], known_items={"abc"})
    # A blank choice is no vote; a blank rater falls back to the file name.
    ok = tmp_path / "bob.csv"
    ok.write_text("\ufeffitem_id,rater,choice,justification\nabc,,a,fine\nabd,,,\n")
    t = ratings_table([ok]).to_pylist()
    assert [(r["rater"], r["item_id"], r["choice"]) for r in t] == [("bob", "abc", "A")]


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.items: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "div" and a.get("class") == "item":
            self.items.append(a["data-item"])
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts.append(data)


def _items() -> pa.Table:
    return pa.Table.from_pylist([
        {"item_id": "i1", "persona_id": "p1", "persona_text": "age: 40\nreligion: <b>none</b>",
         "question": 'Is "tax" fair, & why?', "answer_a": "Yes,\nmostly.", "answer_b": "No."},
        {"item_id": "i2", "persona_id": "p1", "persona_text": "age: 40\nreligion: <b>none</b>",
         "question": "Second?", "answer_a": "A2", "answer_b": "B2 </script>"},
    ])


def test_html_sheet_escapes_content():
    html = sheet_html(_items())
    p = _Collect()
    p.feed(html)
    assert p.items == ["i1", "i2"]
    assert "<b>none</b>" not in html and "&lt;b&gt;none&lt;/b&gt;" in html
    assert "B2 </script>" not in html
    assert html.count("<pre class=\"persona\">") == 1  # one persona block for its items


_DOM_SHIM = r"""
// A minimal DOM: just what the page's script touches, to run it under node.
const fs = require("fs");
const items = JSON.parse(process.argv[2]);
const picks = JSON.parse(process.argv[3]);
const handlers = {}; const saved = [];
function el(tag){ return {tagName: tag, dataset: {}, classList: {toggle(){}}, style: {},
  appendChild(){}, remove(){}, click(){ saved.push(this); }}; }
const itemEls = items.map(it => {
  const e = el("div"); e.dataset.item = it.item_id; e.dataset.persona = it.persona_id;
  const radios = ["A","B"].map(v => ({value: v, checked: picks[it.item_id] && picks[it.item_id][0] === v}));
  const ta = {value: picks[it.item_id] ? picks[it.item_id][1] : ""};
  e.querySelector = (sel) => sel === "textarea" ? ta : (radios.find(r => r.checked) || null);
  e.querySelectorAll = () => radios;
  return e;
});
const byId = {rater: {value: "Dana O'Neil"}, progress: {textContent: ""}, csv: {}, json: {}};
global.document = {body: Object.assign(el("body"), {dataset: {sheet: "t"}}),
  querySelectorAll: () => itemEls, getElementById: (id) => byId[id],
  createElement: (t) => el(t), addEventListener: (ev, fn) => { handlers[ev] = fn; }};
const store = {};
global.localStorage = {getItem: k => store[k] || null, setItem: (k, v) => { store[k] = v; }};
let lastBlob = null;
global.Blob = function(parts){ lastBlob = parts.join(""); };
global.URL = {createObjectURL: () => "blob:x", revokeObjectURL(){}};
global.alert = (m) => { throw new Error(m); };
eval(fs.readFileSync(process.argv[4], "utf8"));
byId.csv.onclick();
const csvText = lastBlob, csvName = saved[0].download;
byId.json.onclick();
process.stdout.write(JSON.stringify({csv: csvText, csvName, json: lastBlob, progress: byId.progress.textContent}));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_html_download_buttons_produce_importable_files(tmp_path):
    """Run the page's own script under node with a tiny DOM; import what it downloads."""
    p = _Collect()
    p.feed(sheet_html(_items()))
    script = tmp_path / "page.js"
    script.write_text("".join(p.scripts))
    shim = tmp_path / "shim.js"
    shim.write_text(_DOM_SHIM)
    picks = {"i1": ["B", 'Too "preachy", and long,\nfor me']}
    items = [{"item_id": "i1", "persona_id": "p1"}, {"item_id": "i2", "persona_id": "p1"}]
    done = subprocess.run(["node", str(shim), json.dumps(items), json.dumps(picks), str(script)],
                          capture_output=True, text=True, timeout=60, check=True)
    got = json.loads(done.stdout)
    assert got["progress"] == "1 of 2 rated"
    assert got["csvName"] == "ratings-Dana_O_Neil.csv"
    (tmp_path / "dana.csv").write_text(got["csv"])
    (tmp_path / "dana.json").write_text(got["json"])
    for name in ("dana.csv", "dana.json"):
        rows = ratings_table([tmp_path / name]).to_pylist()
        assert [(r["rater"], r["item_id"], r["choice"], r["justification"]) for r in rows] == [
            ("Dana O'Neil", "i1", "B", 'Too "preachy", and long,\nfor me')]


def test_roleplay_variants_ask_for_notes_before_the_letter():
    from persona_gen.bench.roleplay import RoleplayChoiceStage, notes_schema
    from persona_gen.engines.base import ChatResult

    row = {"item_id": "i", "persona_text": "I farm.", "question": "Q?", "answer_a": "a",
           "answer_b": "b"}
    full, cot = RoleplayChoiceStage(variant="full"), RoleplayChoiceStage(variant="cot")
    assert full.choices() == ["A", "B"] and full.json_schema() is None
    assert cot.choices() is None and cot.json_schema() == notes_schema()
    assert list(notes_schema()["properties"]) == ["notes", "choice"]  # notes decoded first
    assert "letter only" in full.messages(row)[-1].content
    assert "step by step" in cot.messages(row)[-1].content
    assert "facts about yourself" in RoleplayChoiceStage(variant="summary").messages(row)[-1].content
    got = cot.parse(row, ChatResult(id="i", texts=['{"notes": "I farm", "choice": "b"}']))
    assert (got["choice"], got["roleplay_notes"], got["roleplay_variant"]) == ("B", "I farm", "cot")
