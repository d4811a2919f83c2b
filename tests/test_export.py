"""`persona-gen export` on a real echo run: the folder `datasets` loads, its card, the TRL
DPO view, verified-only, S3 both ways, and the schema checks that refuse a bad block."""

from __future__ import annotations

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
    cfg = write_config(tmp / "job.yaml", census_dir / "nist-acs-2019" / "national2019.csv",
                       prompts, str(tmp / "out"), census={"n": 6},
                       plan={"train_pairs_per_persona": 4, "seen_test_pairs_per_persona": 1,
                             "heldout_test_pairs_per_persona": 2},
                       pipeline={"batch_size": 16})
    with pytest.raises(SystemExit) as done:
        main(["run", "--config", str(cfg), "--run-id", RUN_ID])
    assert done.value.code in (0, None)
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
                   "hf upload", "--repo-type dataset", "truncated rows", "revision 0",
                   "the judge preferred the revision in"):
        assert needle in body, needle


def test_trl_dpo_rows_pair_the_revision_against_the_original(echo_run, tmp_path, capsys):
    out = tmp_path / "dpo"
    assert export(capsys, echo_run, out, "--format", "trl-dpo")[0] == 0
    for row in load(out)["train"]:
        assert row["prompt"] == [{"role": "system", "content": row["persona"]},
                                 {"role": "user", "content": row["instruction"]}]
        assert row["chosen"] == [{"role": "assistant", "content": row["data"]}]
        assert row["rejected"] == [{"role": "assistant", "content": row["original"]}]
    only = tmp_path / "dpo-only"
    assert export(capsys, echo_run, only, "--format", "trl-dpo-only")[0] == 0
    cols = load(only)["test"].column_names
    assert {"prompt", "chosen", "rejected", "persona_split", "prompt_split"} <= set(cols)
    assert "critique" not in cols


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
    assert stdout[-1] == f"verified only: dropped {dropped:,} pairs the judge did not prefer"
    assert f"{dropped:,} were dropped" in (out / "README.md").read_text()


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
    assert export(capsys, run, local, "--format", "trl-dpo")[0] == 0
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
    # A second export into a taken prefix is refused unless asked for.
    code, _, errors = export(capsys, run, target)
    assert code == 2 and errors == [f"error: {target}: the target folder is not empty; pass "
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
    assert code == 2 and stdout == []
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
    assert code == 2 and len(errors) == 1
    assert errors[0].startswith(f"error: {odd}: ") and "lacks seen" in errors[0]


def test_a_taken_local_target_is_refused_unless_overwrite(echo_run, tmp_path, capsys):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    code, _, errors = export(capsys, echo_run, out)
    assert code == 2 and errors == [f"error: {out}: the target folder is not empty; pass "
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
    assert code == 2 and stdout == []
    assert errors == [f"error: {last}: question_type 'dev' is not one of train, test"]
    assert not (tmp_path / "exports").exists()
