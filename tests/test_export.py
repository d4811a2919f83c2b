"""`persona-gen export` on a real echo run: the folder `datasets` loads, its card, the TRL
DPO view (filtered by default, --all-pairs, --persona-turn), verified-only, S3 both ways,
and the schema checks that refuse a bad block."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
import yaml

from persona_gen.cli.main import main
from persona_gen.export.shards import SplitWriter
from persona_gen.personas.attributes import PERSONA_ATTRIBUTES
from persona_gen.storage import objects
from persona_gen.storage.uri import resolve
from tests.pipeline_helpers import read_folder, write_config, write_prompt_file

PAPER = ("persona", "instruction", "original", "critique", "data", "question_type")
RUN_ID = "e1"


@pytest.fixture(autouse=True)
def _hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `datasets` caches every load under ~/.cache/huggingface otherwise.
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))


@pytest.fixture(scope="module")
def echo_run(tmp_path_factory: pytest.TempPathFactory, census_dir: Path, ray_local: None) -> Path:
    """A demo-sized run of the real job with the no-model engine, through the CLI."""
    tmp = tmp_path_factory.mktemp("export-run")
    prompts = write_prompt_file(tmp / "prompts.jsonl", 12)
    # The paper's persona rule: rejects dropped, the next people in draw order drawn until
    # 6 are kept (the echo judge rejects about half).
    cfg = write_config(tmp / "job.yaml", census_dir / "nist-acs-2019" / "national2019.csv",
                       prompts, str(tmp / "out"), personas={"n": 6, "on_inconsistent": "drop"},
                       stages={"consistency": {"enabled": True}},
                       plan={"train_pairs_per_persona": 4, "seen_test_pairs_per_persona": 1,
                             "heldout_test_pairs_per_persona": 2},
                       pipeline={"batch_size": 16})
    out = io.StringIO()
    with pytest.raises(SystemExit) as done, contextlib.redirect_stdout(out):
        main(["run", "--config", str(cfg), "--run-id", RUN_ID, "--json"])
    assert done.value.code in (0, None)
    (tmp / "run.json").write_text(out.getvalue())  # `run --json`: test_json_results
    return tmp / "out" / RUN_ID


def export(capsys: pytest.CaptureFixture[str], run: str | Path, to: str | Path,
           *args: str) -> tuple[int, list[str], list[str]]:
    """Run `persona-gen export`; returns the exit code, stdout lines and stderr error lines."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        main(["export", "--run", str(run), "--to", str(to), *args])
    cap = capsys.readouterr()
    errors = [ln for ln in cap.err.splitlines() if ln.startswith("error:")]
    return int(done.value.code or 0), cap.out.splitlines(), errors


def verdicts_of(run: Path) -> dict[str, str]:
    table, _ = read_folder(str(run), "feedback/verification")
    return dict(zip(table["pair_id"].to_pylist(), table["preferred"].to_pylist(), strict=True))


def card_header(folder: Path) -> dict:
    text = (folder / "README.md").read_text()
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n", 2)[1])


def load(folder: Path, name: str | None = None):  # -> datasets.DatasetDict
    import datasets

    return datasets.load_dataset(str(folder), name)


def copy_run(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


def test_export_loads_with_datasets_with_the_paper_splits(echo_run, tmp_path, capsys):
    import json

    out = tmp_path / "ds"
    code, stdout, _ = export(capsys, echo_run, out)
    assert code == 0 and stdout[0] == str(out)
    manifest = json.loads((echo_run / "manifest.json").read_text())
    ds = load(out)
    assert sorted(ds) == ["test", "train"]
    assert ds["train"].num_rows == manifest["counts"]["plan"]["train"]
    assert ds["test"].num_rows == manifest["counts"]["plan"]["test"]
    assert set(PAPER) | {"pair_id", "persona_id", "prompt_id", "persona_split",
                         "prompt_split", "preferred"} <= set(ds["train"].column_names)
    assert set(ds["train"]["question_type"]) == {"train"} and set(ds["test"]["question_type"]) == {"test"}
    # Persona and prompt splits select held-out people and prompts inside each split.
    personas, _ = read_folder(str(echo_run), "personas/personas.parquet")
    split_of = dict(zip(personas["persona_id"].to_pylist(), personas["split"].to_pylist(), strict=True))
    rows = ds["test"].to_list() + ds["train"].to_list()
    assert all(r["persona_split"] == split_of[r["persona_id"]] for r in rows)
    assert {r["prompt_split"] for r in ds["test"]} == {"train", "heldout"}
    pairs, _ = read_folder(str(echo_run), "feedback/pairs")
    assert sorted(r["pair_id"] for r in rows) == sorted(pairs["pair_id"].to_pylist())
    # The Hub's file naming, and nothing left behind beside the target.
    assert sorted(p.name for p in (out / "data").iterdir()) == [
        "test-00000-of-00001.parquet", "train-00000-of-00001.parquet"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "hf-cache") == ["ds"]


def test_card_header_declares_configs_splits_and_features(echo_run, tmp_path, capsys):
    from datasets import Features
    from huggingface_hub import DatasetCard

    out = tmp_path / "ds"
    assert export(capsys, echo_run, out, "--format", "trl-dpo")[0] == 0
    head = card_header(out)
    configs = {c["config_name"]: c for c in head["configs"]}
    assert configs["default"]["default"] is True
    assert configs["default"]["data_files"] == [{"split": "train", "path": "data/train-*"},
                                                {"split": "test", "path": "data/test-*"}]
    assert "personas" in configs
    info = {c["config_name"]: c for c in head["dataset_info"]}
    for name, folder in (("default", "data"), ("personas", "personas")):
        schema = pq.read_schema(next((out / folder).glob("train-*.parquet")))
        # The card's features are what `datasets` itself derives from the files.
        assert info[name]["features"] == Features.from_arrow_schema(schema)._to_yaml_list()
    assert {s["name"]: s["num_examples"] for s in info["default"]["splits"]} == {
        "train": load(out)["train"].num_rows, "test": load(out)["test"].num_rows}
    assert DatasetCard.load(out / "README.md").data.configs  # the Hub's own parser agrees
    body = (out / "README.md").read_text()
    for needle in ("2407.17387", "code version", "seed: `11`", "| verify | echo |",
                   "Census fidelity", "| sex |", "public domain", "`prompts.jsonl`",
                   "truncated rows", "revision 0", "the judge preferred the revision in",
                   "## Bias, limitations and sensitive attributes", "## Example row"):
        assert needle in body, needle
    # Upload instructions are the publisher's (README, `export --help`), not the reader's.
    assert "hf upload" not in body and "## Publishing" not in body


FRAME = ("About the person:\n{}\n\nYou are a helpful assistant, and the person described "
         "above is the user you are answering.")


def test_trl_dpo_rows_pair_the_revision_against_the_original(echo_run, tmp_path, capsys):
    out = tmp_path / "dpo"
    assert export(capsys, echo_run, out, "--format", "trl-dpo")[0] == 0
    for row in load(out)["train"]:
        # The persona as generation framed it: the attributes of the user being answered.
        assert row["prompt"] == [{"role": "system", "content": FRAME.format(row["persona"])},
                                 {"role": "user", "content": row["instruction"]}]
        assert row["chosen"] == [{"role": "assistant", "content": row["data"]}]
        assert row["rejected"] == [{"role": "assistant", "content": row["original"]}]
    only = tmp_path / "dpo-only"
    assert export(capsys, echo_run, only, "--format", "trl-dpo-only")[0] == 0
    cols = load(only)["test"].column_names
    assert {"prompt", "chosen", "rejected", "persona_split", "prompt_split"} <= set(cols)
    assert "critique" not in cols


def _cut_some(run: Path) -> None:
    """Mark the revision of every third pair and the original of every fifth as cut."""
    def change(t: pa.Table) -> pa.Table:
        n = t.num_rows
        for col, every in (("revision_finish_reason", 3), ("original_finish_reason", 5)):
            t = t.set_column(t.schema.get_field_index(col), col, pa.array(
                ["length" if i % every == 0 else "stop" for i in range(n)]))
        return t
    _rewrite_pairs(run, change)


def test_the_dpo_view_keeps_only_verified_uncut_pairs_and_the_card_counts_each_filter(
        echo_run, tmp_path, capsys):
    run = copy_run(echo_run, tmp_path / "runs" / RUN_ID)
    _cut_some(run)
    pairs, _ = read_folder(str(run), "feedback/pairs")
    preferred = verdicts_of(run)
    expect: dict[str, dict[str, int]] = {s: {"original": 0, "unjudged": 0, "cut": 0, "kept": 0}
                                         for s in ("train", "test")}
    kept = set()
    for r in pairs.to_pylist():
        e = expect[r["question_type"]]
        verdict = preferred.get(r["pair_id"])
        if verdict != "revision":
            e["original" if verdict == "original" else "unjudged"] += 1
        elif "length" in (r["revision_finish_reason"], r["original_finish_reason"]):
            e["cut"] += 1
        else:
            e["kept"] += 1
            kept.add(r["pair_id"])
    assert all(e["original"] and e["cut"] for e in expect.values())  # the test tests something
    out = tmp_path / "dpo"
    code, stdout, _ = export(capsys, run, out, "--format", "trl-dpo")
    assert code == 0
    ds = load(out)
    rows = ds["train"].to_list() + ds["test"].to_list()
    assert {r["pair_id"] for r in rows} == kept
    assert {r["preferred"] for r in rows} == {"revision"}
    assert {r["revision_finish_reason"] for r in rows} == {r["original_finish_reason"]
                                                           for r in rows} == {"stop"}
    total = sum(e["original"] + e["unjudged"] + e["cut"] for e in expect.values())
    assert stdout[-1] == (
        f"filtered: dropped {total:,} pairs (judge preferred the original "
        f"{sum(e['original'] for e in expect.values()):,}; not judged 0; cut at the token "
        f"limit {sum(e['cut'] for e in expect.values()):,})")
    body = (out / "README.md").read_text()
    assert ("This export keeps pairs where the judge preferred the revision and neither the "
            "original nor the revision was cut at its token limit") in body
    for split, e in expect.items():
        assert f"| {split} | {e['original']:,} | {e['unjudged']:,} | {e['cut']:,} |" in body


def test_all_pairs_exports_every_pair_and_the_card_says_what_the_filter_would_drop(
        echo_run, tmp_path, capsys):
    run = copy_run(echo_run, tmp_path / "runs" / RUN_ID)
    _cut_some(run)
    pairs, _ = read_folder(str(run), "feedback/pairs")
    out = tmp_path / "all"
    code, stdout, _ = export(capsys, run, out, "--format", "trl-dpo", "--all-pairs")
    assert code == 0 and not any(ln.startswith("filtered:") for ln in stdout)
    ds = load(out)
    assert ds["train"].num_rows + ds["test"].num_rows == pairs.num_rows
    body = (out / "README.md").read_text()
    assert "This export keeps every pair (`--all-pairs`)" in body
    assert "Pairs the DPO filter would drop, per split" in body
    # The two flags contradict each other: one line, exit 65, nothing written.
    code, _, errors = export(capsys, run, tmp_path / "both", "--all-pairs", "--verified-only")
    assert code == 65 and len(errors) == 1 and "--all-pairs" in errors[0]
    assert not (tmp_path / "both").exists()


def test_every_format_keeps_the_verdict_and_the_finish_reasons(echo_run, tmp_path, capsys):
    pairs, _ = read_folder(str(echo_run), "feedback/pairs")
    finish = sorted(c for c in pairs.column_names if c.endswith("_finish_reason"))
    assert {"original_finish_reason", "critique_finish_reason",
            "revision_finish_reason"} <= set(finish)
    preferred = verdicts_of(echo_run)
    for fmt in ("paper", "trl-dpo", "trl-dpo-only"):
        out = tmp_path / fmt
        assert export(capsys, echo_run, out, "--format", fmt, "--all-pairs")[0] == 0
        rows = load(out)["train"].to_list()
        assert {"preferred", *finish} <= set(rows[0]), fmt
        assert all(r["preferred"] == preferred.get(r["pair_id"]) for r in rows), fmt


def test_persona_turn_puts_the_framed_persona_where_the_chat_template_takes_it(
        echo_run, tmp_path, capsys):
    for turn in ("user", "none"):
        out = tmp_path / turn
        assert export(capsys, echo_run, out, "--format", "trl-dpo", "--all-pairs",
                      "--persona-turn", turn)[0] == 0
        for row in load(out)["test"]:
            content = (FRAME.format(row["persona"]) + "\n\n" + row["instruction"]
                       if turn == "user" else row["instruction"])
            # No system turn: templates without a system role (Gemma) take it as it is.
            assert row["prompt"] == [{"role": "user", "content": content}]
        assert f"`--persona-turn {turn}`" in (out / "README.md").read_text()
    from persona_gen.errors import EXIT_USAGE

    assert export(capsys, echo_run, tmp_path / "bad", "--format", "trl-dpo",
                  "--persona-turn", "assistant")[0] == EXIT_USAGE
    # The paper format has no prompt to put it in: one line, exit 65, nothing written.
    code, _, errors = export(capsys, echo_run, tmp_path / "paper", "--persona-turn", "user")
    assert code == 65 and errors[0].startswith("error: --persona-turn: only the trl formats")
    assert not (tmp_path / "paper").exists()


def test_verified_only_drops_exactly_the_pairs_the_judge_did_not_prefer(echo_run, tmp_path,
                                                                        capsys):
    verdicts, _ = read_folder(str(echo_run), "feedback/verification")
    preferred = dict(zip(verdicts["pair_id"].to_pylist(), verdicts["preferred"].to_pylist(),
                         strict=True))
    kept = {p for p, v in preferred.items() if v == "revision"}
    assert 0 < len(kept) < len(preferred)  # the echo judge prefers both, so this tests something
    out = tmp_path / "verified"
    code, stdout, _ = export(capsys, echo_run, out, "--verified-only")
    assert code == 0
    ds = load(out)
    got = set(ds["train"]["pair_id"]) | set(ds["test"]["pair_id"])
    assert got == kept
    assert set(ds["train"]["preferred"]) == {"revision"}
    dropped = len(preferred) - len(kept)
    assert stdout[-1] == (f"filtered: dropped {dropped:,} pairs (judge preferred the original "
                          f"{dropped:,}; not judged 0)")
    body = (out / "README.md").read_text()
    assert "keeps pairs where the judge preferred the revision (`--verified-only`)" in body


def test_personas_config_loads_with_attributes_split_and_provenance(echo_run, tmp_path, capsys):
    out = tmp_path / "ds"
    assert export(capsys, echo_run, out)[0] == 0
    personas = load(out, "personas")
    table, _ = read_folder(str(echo_run), "personas/personas.parquet")
    counts = pc.value_counts(table["split"]).to_pylist()
    assert {s: personas[s].num_rows for s in personas} == {c["values"]: c["counts"] for c in counts}
    cols = set(personas["train"].column_names)
    assert set(PERSONA_ATTRIBUTES) <= cols
    assert {"persona_id", "split", "persona_text", "source", "record_id", "pwgtp"} <= cols


def test_export_from_s3_to_local_and_to_s3(echo_run, tmp_path, capsys, s3_bucket):
    s3 = resolve(f"s3://{s3_bucket}/runs")
    pafs.copy_files(str(echo_run), s3.child(RUN_ID).path,
                    source_filesystem=pafs.LocalFileSystem(), destination_filesystem=s3.fs)
    run = f"s3://{s3_bucket}/runs/{RUN_ID}"
    local = tmp_path / "from-s3"
    assert export(capsys, run, local, "--format", "trl-dpo", "--all-pairs")[0] == 0
    ds = load(local)
    pairs, _ = read_folder(str(echo_run), "feedback/pairs")
    assert ds["train"].num_rows + ds["test"].num_rows == pairs.num_rows

    target = f"s3://{s3_bucket}/exports/{RUN_ID}"
    code, stdout, _ = export(capsys, run, target)
    assert code == 0 and stdout[0] == target
    loc = resolve(target)
    names = [p[len(loc.path) + 1:] for p in objects.list_files(loc)]
    assert sorted(names) == sorted(str(p.relative_to(local)) for p in local.rglob("*")
                                   if p.is_file())
    copy = tmp_path / "downloaded"
    pafs.copy_files(loc.path, str(copy), source_filesystem=loc.fs,
                    destination_filesystem=pafs.LocalFileSystem())
    assert load(copy)["test"].num_rows == ds["test"].num_rows
    # Nothing published names where the run lives (the bucket, the local folders).
    for text in ((copy / "README.md").read_text(), (copy / "run_config.yaml").read_text()):
        assert "s3://" not in text and s3_bucket not in text and str(tmp_path) not in text
    # A second export into a taken prefix is refused unless asked for.
    code, _, errors = export(capsys, run, target)
    assert code == 65 and errors == [f"error: {target}: the target folder is not empty; pass "
                                    "--overwrite to replace it"]


def _bad_block(run: Path) -> Path:
    """A pairs block whose `critique` column holds integers."""
    first = sorted((run / "feedback" / "pairs").glob("*.parquet"))[0]
    table = pq.read_table(first)
    i = table.schema.get_field_index("critique")
    bad = table.set_column(i, "critique", pa.array(range(table.num_rows), pa.int64()))
    path = first.with_name("part-99999.parquet")
    pq.write_table(bad, path)
    return path


def test_a_block_with_a_wrong_column_type_fails_naming_the_file_and_writes_nothing(
        echo_run, tmp_path, capsys):
    run = copy_run(echo_run, tmp_path / "runs" / RUN_ID)
    bad = _bad_block(run)
    out = tmp_path / "exports" / "ds"
    code, stdout, errors = export(capsys, run, out)
    assert code == 65 and stdout == []
    assert errors == [f"error: {bad}: column 'critique' is int64 where the run's blocks have "
                      "string"]
    assert not out.exists() and not (tmp_path / "exports").exists()


def test_a_block_whose_rows_all_failed_is_cast_not_refused(echo_run, tmp_path, capsys):
    run = copy_run(echo_run, tmp_path / "runs" / RUN_ID)
    first = sorted((run / "feedback" / "pairs").glob("*.parquet"))[0]
    table = pq.read_table(first).slice(0, 0)
    nulls = {"critique", "data", "data_output_tokens"} & set(table.column_names)
    empty = pa.table({c: (pa.nulls(0) if c in nulls else table[c]) for c in table.column_names})
    pq.write_table(empty, first.with_name("part-99998.parquet"))
    out = tmp_path / "ds"
    assert export(capsys, run, out)[0] == 0
    pairs, _ = read_folder(str(echo_run), "feedback/pairs")
    ds = load(out)
    assert ds["train"].num_rows + ds["test"].num_rows == pairs.num_rows


def test_a_block_with_other_columns_fails_naming_the_file(echo_run, tmp_path, capsys):
    run = copy_run(echo_run, tmp_path / "runs" / RUN_ID)
    first = sorted((run / "feedback" / "pairs").glob("*.parquet"))[0]
    odd = first.with_name("part-99997.parquet")
    pq.write_table(pq.read_table(first).drop_columns(["seen"]), odd)
    code, _, errors = export(capsys, run, tmp_path / "ds")
    assert code == 65 and len(errors) == 1
    assert errors[0].startswith(f"error: {odd}: ") and "lacks seen" in errors[0]


def test_a_taken_local_target_is_refused_unless_overwrite(echo_run, tmp_path, capsys):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    code, _, errors = export(capsys, echo_run, out)
    assert code == 65 and errors == [f"error: {out}: the target folder is not empty; pass "
                                    "--overwrite to replace it"]
    assert export(capsys, echo_run, out, "--overwrite")[0] == 0
    assert not (out / "keep.txt").exists() and (out / "README.md").exists()


def test_splits_are_sharded_by_size_with_hub_names(tmp_path):
    schema = pa.schema([("text", pa.string())])
    writer = SplitWriter(tmp_path, "train", schema, max_shard_bytes=40_000)
    for i in range(30):
        writer.write(pa.table({"text": [f"{i:04d}" + "x" * 1000] * 50}, schema=schema))
    files = writer.close()
    names = [Path(f).name for f in files.files]
    assert len(names) > 1
    assert names == [f"train-{i:05d}-of-{len(names):05d}.parquet" for i in range(len(names))]
    assert sum(pq.read_metadata(f).num_rows for f in files.files) == files.rows == 30 * 50


def _rewrite_pairs(run: Path, change) -> None:
    for path in sorted((run / "feedback" / "pairs").glob("*.parquet")):
        pq.write_table(change(pq.read_table(path)), path)


def test_truncated_rows_are_counted_where_the_run_records_finish_reasons(echo_run, tmp_path,
                                                                         capsys):
    run = copy_run(echo_run, tmp_path / "runs" / RUN_ID)
    # Every stage records its finish reason; mark one revision per block as cut.
    _rewrite_pairs(run, lambda t: t.set_column(
        t.schema.get_field_index("revision_finish_reason"), "revision_finish_reason",
        pa.array(["length"] + ["stop"] * (t.num_rows - 1))))
    blocks = len(list((run / "feedback" / "pairs").glob("*.parquet")))
    out = tmp_path / "ds"
    assert export(capsys, run, out)[0] == 0
    line = next(ln for ln in (out / "README.md").read_text().splitlines()
                if ln.startswith("- truncated rows (generation stopped at max_tokens): "))
    assert f"revision {blocks}" in line and "critique 0" in line and "original 0" in line


def test_a_bad_block_found_while_streaming_leaves_nothing_behind(echo_run, tmp_path, capsys):
    run = copy_run(echo_run, tmp_path / "runs" / RUN_ID)
    last = sorted((run / "feedback" / "pairs").glob("*.parquet"))[-1]
    table = pq.read_table(last)
    pq.write_table(table.set_column(table.schema.get_field_index("question_type"),
                                    "question_type", pa.array(["dev"] * table.num_rows)), last)
    out = tmp_path / "exports" / "nested" / "ds"
    code, stdout, errors = export(capsys, run, out)
    assert code == 65 and stdout == []
    assert errors == [f"error: {last}: question_type 'dev' is not one of train, test"]
    assert not (tmp_path / "exports").exists()


def test_the_card_header_derives_licence_sources_and_creators(echo_run, tmp_path, capsys):
    """Model outputs carry model terms: a run on Llama 3.1 over PRISM prompts is `other`
    (CC-BY-4.0 and the Llama 3.1 licence), from PRISM, machine-annotated."""
    from huggingface_hub import DatasetCard

    run = copy_run(echo_run, tmp_path / "runs" / RUN_ID)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["config"]["prompts"]["source"] = "s3://bucket/inputs/prism_conversations.jsonl"
    for stage in ("critique", "revision"):
        manifest["settings"][stage]["model"] = "llama-3.1-8b-instruct"
    manifest["models"]["llama-3.1-8b-instruct"] = {
        "name": "llama-3.1-8b-instruct", "engine": "vllm",
        "source": "meta-llama/Llama-3.1-8B-Instruct"}
    for stage in ("critique", "revision"):
        manifest["stages"][stage]["model"] = "llama-3.1-8b-instruct"
    (run / "manifest.json").write_text(json.dumps(manifest))
    out = tmp_path / "ds"
    assert export(capsys, run, out, "--format", "trl-dpo")[0] == 0
    head = card_header(out)
    assert head["license"] == "other" and head["license_name"] == "cc-by-4.0-and-llama3.1"
    assert head["license_link"] == "https://www.llama.com/llama3_1/license/"
    assert head["source_datasets"] == ["original", "HannahRoseKirk/prism-alignment"]
    assert head["annotations_creators"] == ["machine-generated"]
    assert head["language_creators"] == ["machine-generated", "crowdsourced"]
    data = DatasetCard.load(out / "README.md").data
    assert data.license == "other" and data.annotations_creators == ["machine-generated"]
    body = (out / "README.md").read_text()
    assert "Llama 3.1 Community License" in body and "CC-BY-4.0" in body
    assert "s3://" not in body and "bucket" not in body
    # The echo run itself: its own prompt file's licence is not known, so neither is the set's.
    plain = tmp_path / "plain"
    assert export(capsys, echo_run, plain, "--format", "trl-dpo")[0] == 0
    assert card_header(plain)["license"] == "unknown"


def test_licences_combine_by_their_hub_ids():
    from persona_gen.export.licence import header_fields, model_terms

    apache = model_terms("qwen2.5-7b-instruct", {"engine": "vllm",
                                                 "source": "Qwen/Qwen2.5-7B-Instruct"})
    gemma = model_terms("gemma-2-9b-it", {"engine": "vllm", "source": "google/gemma-2-9b-it"})
    assert model_terms("echo", {"engine": "echo"}) is None
    assert header_fields("apache-2.0", [apache, None]) == {"license": "apache-2.0"}
    assert header_fields("cc-by-4.0", [apache]) == {"license": ["cc-by-4.0", "apache-2.0"]}
    assert header_fields("cc-by-4.0", [gemma])["license_name"] == "cc-by-4.0-and-gemma"
    unknown = model_terms("my-model", {"engine": "vllm", "source": "me/my-model"})
    assert header_fields("apache-2.0", [unknown]) == {"license": "unknown"}


def test_the_card_says_how_every_row_was_made_and_names_no_run_location(echo_run, tmp_path,
                                                                        capsys):
    out = tmp_path / "ds"
    assert export(capsys, echo_run, out, "--format", "trl-dpo")[0] == 0
    body = (out / "README.md").read_text()
    manifest = json.loads((echo_run / "manifest.json").read_text())
    stats = manifest["counts"]["personas"]
    # Persona counts: drawn, rejected by rule and by judge, kept (personas.n).
    assert stats["kept"] == stats["requested"] == 6 and stats["drawn"] > 6
    assert (f"personas: 6 kept of 6 asked for (`on_inconsistent: drop`); census people drawn "
            f"{stats['drawn']:,}; rejected by the rules {stats['rejected_by_rule']:,}, by the "
            f"model judge {stats['rejected_by_judge']:,}") in body
    # One split story, with a recipe per common selection.
    for needle in ("| `question_type` |", "| `persona_split` |", "| `prompt_split` |",
                   'r["persona_split"] == "train"', 'r["persona_split"] == "test"',
                   'r["prompt_split"] == "heldout"'):
        assert needle in body, needle
    # Sampling settings and every stage's template, as the manifest recorded them.
    assert "| critique | echo | 0.7 |" in body or "| critique | echo |" in body
    for stage, t in manifest["templates"].items():
        assert f"<code>{stage}</code>" in body and t["text"].strip() in body
    # The resolved config beside the data, linked from the card; no run location anywhere.
    assert "[`run_config.yaml`](run_config.yaml)" in body
    config = yaml.safe_load((out / "run_config.yaml").read_text())
    assert config["personas"]["n"] == 6 and config["census"]["sources"] == ["national2019.csv"]
    assert "storage" not in config and "output" not in config["run"]
    for text in (body, (out / "run_config.yaml").read_text()):
        assert str(echo_run) not in text and str(echo_run.parent) not in text
    # An example row, texts cut for display; the census fidelity against sampling noise.
    example = json.loads(body.split("## Example row", 1)[1].split("```json\n", 1)[1]
                         .split("\n```", 1)[0])
    assert example["preferred"] == "revision" and len(example["data"]) <= 160 + 6
    assert "| attribute | TVD | expected | p95 | flagged |" in body


def test_json_results(echo_run: Path, tmp_path: Path, capsys) -> None:
    """`run --json` (the fixture's run), `status --json` and `export --json`: one JSON object
    each on stdout, and they agree."""
    summary = json.loads((echo_run.parent.parent / "run.json").read_text())
    assert summary["run_id"] == RUN_ID and summary["phases"][-1] == "pairs"
    revisions = summary["stages"]["revision"]["done"]
    assert revisions > 0 and summary["dataset"].endswith("feedback/pairs")
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        main(["status", "--run", str(echo_run), "--json"])
    state = json.loads(capsys.readouterr().out)
    assert done.value.code in (0, None) and state["status"] == "complete"
    assert {s["stage"]: s["done"] for s in state["stages"]}["revision"] == revisions
    code, out, errors = export(capsys, echo_run, tmp_path / "ds", "--json", "--no-fidelity")
    result = json.loads("\n".join(out))
    assert code == 0 and not errors and len(out) == 1
    assert sum(s["rows"] for s in result["splits"]["default"].values()) == revisions
    assert result["dropped"] is None and result["pair_filter"] == {"verified": False,
                                                                   "complete": False}
