"""Prompts: loading PRISM-style files, the filters in order, topics, the balanced split,
and the `prompts build` command. The classifier runs against a scripted engine here; the
real bundled model is exercised in tests/test_prompts_model.py."""

from __future__ import annotations

import json
import math

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from persona_gen.cli.main import main
from persona_gen.engines.base import ChatRequest, ChatResult, Engine
from persona_gen.errors import DataError
from persona_gen.pipeline.stage import Bound, ModelStage
from persona_gen.prompts.build import build_prompts, finalize_prompts, select_prompts
from persona_gen.prompts.classify import (
    CONTROVERSIAL,
    INSTRUCTIONS,
    NOT_CONTROVERSIAL,
    ControversyStage,
    parse_label,
)
from persona_gen.prompts.config import PromptsConfig
from persona_gen.prompts.data import bundled_prompts_path
from persona_gen.prompts.filters import has_question_mark, word_count
from persona_gen.prompts.ids import normalize_text, prompt_id
from persona_gen.prompts.load import load_prompts
from persona_gen.prompts.split import HELDOUT, heldout_quotas, stratified_split

NO_MODEL = PromptsConfig()
ANSWERS = INSTRUCTIONS["debatable"]


def for_model(model: str) -> ControversyStage:
    """The controversy stage as the recipe builds it for a config naming `model`."""
    from persona_gen.run import recipe as R
    from persona_gen.run.config import RunConfig

    cfg = RunConfig.model_validate({"stages": {"controversy": {"model": model}}})
    return R.build(cfg, "controversy")  # type: ignore[return-value]


def classify(model: str | None, engine: Engine) -> Bound | None:
    """The classifier stage for `model` bound to `engine` (None: no classifier)."""
    return None if model is None else Bound(for_model(model), engine)


def bundled_rows() -> list[dict]:
    with open(bundled_prompts_path(), encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def question_of(req: ChatRequest) -> str:
    """The prompt under judgement, cut back out of the classifier's user message."""
    user = req.messages[-1].content
    return user.split("Question: ", 1)[1].split("\n\n", 1)[0]


SMALL = "smollm2-135m-instruct"


class ScriptedClassifierEngine:
    """A deterministic stand-in for a model: answers each question from a table (by its
    text), `default` otherwise; questions in `fail` come back as engine errors."""

    name = "scripted"

    def __init__(self, answers: dict[str, str], default: str = "debatable",
                 fail: frozenset[str] = frozenset()) -> None:
        self.answers, self.default, self.fail = answers, default, fail
        self.requests: list[ChatRequest] = []

    def generate(self, requests: list[ChatRequest]) -> list[ChatResult]:
        self.requests.extend(requests)
        out = []
        for req in requests:
            q = question_of(req)
            if q in self.fail:
                out.append(ChatResult(id=req.id, error="engine: request failed"))
            else:
                out.append(ChatResult(id=req.id, texts=[self.answers.get(q, self.default)]))
        return out

    def close(self) -> None:
        pass


# ---- the bundled set -----------------------------------------------------------------------

def test_bundled_set_has_enough_questions_topics_and_planted_rejects():
    rows = bundled_rows()
    keepers = [r for r in rows if "expect" not in r]
    assert len(keepers) >= 80
    assert len({r["topic"] for r in keepers}) >= 8
    assert all(r["topic"] for r in rows)
    planted = {r["expect"] for r in rows if "expect" in r}
    assert planted == {"reject:question_mark", "reject:min_words", "reject:controversy",
                       "reject:duplicate"}


def test_rule_filters_reject_exactly_the_planted_rows_with_their_reason():
    expect = {r["opening_prompt"].strip(): r.get("expect") for r in bundled_rows()}
    sel = select_prompts(NO_MODEL)
    for row in sel.rejected.to_pylist():
        assert expect[row["text"]] == f"reject:{row['reason']}", row
    for text in sel.kept.column("text").to_pylist():
        # The model filter did not run: only its planted rows survive besides the keepers.
        assert expect[text] in (None, "reject:controversy"), text
    rule_planted = [e for e in expect.values() if e and e != "reject:controversy"]
    assert sel.rejected.num_rows == len(rule_planted)
    steps = {s.name: s for s in sel.stats.steps}
    assert [s.name for s in sel.stats.steps] == ["empty", "duplicate", "question_mark",
                                                 "min_words"]
    assert steps["duplicate"].rejected == rule_planted.count("reject:duplicate")
    assert steps["question_mark"].rejected == rule_planted.count("reject:question_mark")
    assert steps["min_words"].rejected == rule_planted.count("reject:min_words")
    # Each step sees what the one before it kept.
    for a, b in zip(sel.stats.steps, sel.stats.steps[1:], strict=False):
        assert b.seen == a.kept
    assert sel.stats.classifier is None


def test_controversy_filter_rejects_what_the_model_calls_not_controversial():
    rows = bundled_rows()
    factual = {r["opening_prompt"] for r in rows if r.get("expect") == "reject:controversy"}
    engine = ScriptedClassifierEngine({q: "factual" for q in factual})
    # The bundled model's family asks "debatable or factual" (its YAML's classifier_instruction).
    table, stats = build_prompts(PromptsConfig(), classify(SMALL, engine), seed=0)
    keepers = {r["opening_prompt"] for r in rows if "expect" not in r}
    assert set(table.column("text").to_pylist()) == keepers
    step = stats.step("controversy")
    assert (step.seen, step.rejected, step.errors) == (len(keepers) + len(factual),
                                                       len(factual), 0)
    assert stats.classifier == engine.name
    # Every request offered the model exactly the two answers.
    assert engine.requests and all(r.choices == list(ANSWERS) for r in engine.requests)
    assert all(r.sampling.temperature == 0.0 for r in engine.requests)


def test_classifier_failures_and_off_label_answers_become_errors_not_crashes():
    keepers = [r["opening_prompt"] for r in bundled_rows() if "expect" not in r]
    failed, rambling = keepers[0], keepers[1]
    engine = ScriptedClassifierEngine({rambling: "Well, it depends."},
                                      fail=frozenset({failed}))
    sel = select_prompts(PromptsConfig(), classify(SMALL, engine))
    assert sel.stats.step("controversy").errors == 2
    errors = {r["text"]: r["error"] for r in sel.rejected.to_pylist() if r["reason"] == "controversy"}
    assert errors[failed] == "controversy: engine error: engine: request failed"
    assert "unexpected classifier output" in errors[rambling]
    assert failed not in sel.kept.column("text").to_pylist()


def test_classifier_stage_is_a_model_stage_and_reads_lenient_labels():
    stage = ControversyStage()
    assert isinstance(stage, ModelStage) and stage.name == "controversy"
    assert isinstance(ScriptedClassifierEngine({}), Engine)
    assert parse_label("debatable") == CONTROVERSIAL
    assert parse_label("factual") == NOT_CONTROVERSIAL
    assert parse_label(" Factual.") == NOT_CONTROVERSIAL
    # Engines that cannot constrain output may answer with the label names themselves.
    assert parse_label(" Not controversial.") == NOT_CONTROVERSIAL
    assert parse_label("CONTROVERSIAL") == CONTROVERSIAL
    assert parse_label("not-controversial") == NOT_CONTROVERSIAL
    assert parse_label("uncertain") is None
    empty = pa.table({"prompt_id": pa.array([], pa.string()), "text": pa.array([], pa.string())})
    out = stage.results(empty, [])
    assert out.num_rows == 0 and {"controversy", "error"} <= set(out.column_names)


def test_classifier_skipped_without_an_engine_or_without_a_model():
    _, stats = build_prompts(PromptsConfig(), None, seed=0)
    assert stats.classifier is None
    assert "controversy" not in [s.name for s in stats.steps]
    engine = ScriptedClassifierEngine({}, default="factual")
    table, stats = build_prompts(NO_MODEL, classify(None, engine), seed=0)
    assert engine.requests == [] and stats.classifier is None and table.num_rows > 0


# ---- ids and rules -------------------------------------------------------------------------

def test_prompt_ids_are_stable_hashes_of_normalized_text():
    assert normalize_text("  Is  IT fair?\n") == "is it fair?"
    assert prompt_id("Is it fair?") == prompt_id(" is   IT  fair? ")
    assert prompt_id("Is it fair?") != prompt_id("Is it fair")
    # Pinned: ids key outputs across runs and releases, so the scheme must not drift.
    assert prompt_id("Is it fair?") == "22b376f44d170786"


def test_word_count_and_question_mark_rules():
    assert word_count("Is God real ?") == 3
    assert word_count("Should we, as a society, ban cars?") == 7
    assert has_question_mark("Is this fine？")
    assert not has_question_mark("Tell me why.")


# ---- topics and split ----------------------------------------------------------------------

def test_split_is_balanced_by_topic_on_the_bundled_set():
    cfg = NO_MODEL
    table, stats = build_prompts(cfg, None, seed=0)
    n = table.num_rows
    assert stats.heldout == math.floor(cfg.heldout_fraction * n + 0.5)
    assert stats.train + stats.heldout == n
    assert stats.topics_from == "column"
    for topic, c in stats.topics.items():
        size = c.train + c.heldout
        # Within one prompt of the topic's exact share, and every topic in both splits.
        assert abs(c.heldout - cfg.heldout_fraction * size) < 1, topic
        assert c.train > 0 and c.heldout > 0, topic


def test_heldout_quotas_hit_the_paper_total_and_each_topic_share():
    counts = {"a": 1200, "b": 900, "c": 700, "d": 500, "e": 301, "f": 150, "g": 110, "h": 7}
    assert sum(counts.values()) == 3868
    fraction = 868 / 3868
    quotas = heldout_quotas(counts, fraction)
    assert sum(quotas.values()) == 868
    for topic, n in counts.items():
        assert abs(quotas[topic] - fraction * n) < 1, topic


def test_split_depends_on_the_set_and_seed_not_the_row_order():
    ids = [f"p{i:03d}" for i in range(60)]
    topics = [("x", "y", "z")[i % 3] for i in range(60)]
    a = dict(zip(ids, stratified_split(ids, topics, 0.25, seed=7), strict=True))
    b = dict(zip(ids[::-1], stratified_split(ids[::-1], topics[::-1], 0.25, seed=7), strict=True))
    c = dict(zip(ids, stratified_split(ids, topics, 0.25, seed=8), strict=True))
    assert a == b
    assert a != c
    assert sum(v == HELDOUT for v in a.values()) == 15


def test_kmeans_topics_are_seeded_labelled_by_top_terms_and_order_free():
    tax = ["Should the income tax rate rise for top earners?",
           "Is a wealth tax on billionaires fair?", "Would a land tax reduce housing costs?",
           "Should fuel tax be cut when prices climb?", "Is a sugar tax on soft drinks justified?",
           "Should inheritance tax be abolished entirely?"]
    school = ["Should every school teach philosophy to young pupils?",
              "Is school uniform a good idea for teenagers?",
              "Should a school day start later in the morning?",
              "Should school lunches be free for all?",
              "Do grammar school systems widen inequality?",
              "Should school homework be banned for children?"]
    rows = [{"prompt_id": prompt_id(t), "text": t, "topic": None} for t in tax + school]
    cfg = PromptsConfig(topic_column=None, n_topics=2,
                        heldout_fraction=0.5)
    table, stats = finalize_prompts(pa.Table.from_pylist(rows), cfg, seed=1)
    by_text = dict(zip(table.column("text").to_pylist(), table.column("topic").to_pylist(),
                       strict=True))
    assert len({by_text[t] for t in tax}) == 1 and len({by_text[t] for t in school}) == 1
    # The one word every question in a cluster shares leads its label.
    assert by_text[tax[0]].startswith("tax / ") and by_text[school[0]].startswith("school / ")
    assert stats.topics_from == "kmeans"
    assert all(c.train == c.heldout == 3 for c in stats.topics.values())
    again, _ = finalize_prompts(pa.Table.from_pylist(rows[::-1]), cfg, seed=1)
    assert dict(zip(again.column("text").to_pylist(), again.column("topic").to_pylist(),
                    strict=True)) == by_text


def test_build_is_deterministic_for_a_seed():
    a, _ = build_prompts(NO_MODEL, None, seed=3)
    b, _ = build_prompts(NO_MODEL, None, seed=3)
    c, _ = build_prompts(NO_MODEL, None, seed=4)
    assert a.equals(b)
    assert a.column("split") != c.column("split")
    assert a.schema.names == ["prompt_id", "text", "topic", "split"]
    assert len(set(a.column("prompt_id").to_pylist())) == a.num_rows


# ---- loading -------------------------------------------------------------------------------

def _prism_like() -> list[dict]:
    """Rows shaped like PRISM's conversations (extra and nested fields), our own text."""
    texts = ["Should cities ban cars from their centres?", "Is lying to a friend ever kind?",
             "What is two plus two?", "Is it right to eat meat today?"]
    return [{"conversation_id": f"c{i}", "opening_prompt": t, "included_in_balanced_subset": True,
             "conversation_history": [{"turn": 0, "role": "user", "content": t}]}
            for i, t in enumerate(texts)]


def test_jsonl_csv_and_parquet_load_the_same_prompts(tmp_path):
    rows = _prism_like()
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    flat = pa.table({"id": [r["conversation_id"] for r in rows],
                     "question": [r["opening_prompt"] for r in rows]})
    pacsv.write_csv(flat, tmp_path / "p.csv")
    pq.write_table(flat, tmp_path / "p.parquet")
    from_jsonl = load_prompts(str(jsonl), "opening_prompt", "topic")
    assert from_jsonl.column("text").to_pylist() == [r["opening_prompt"] for r in rows]
    assert from_jsonl.column("topic").null_count == len(rows)
    for name in ("p.csv", "p.parquet"):
        other = load_prompts(str(tmp_path / name), "question", "topic")
        assert other.column("text").to_pylist() == from_jsonl.column("text").to_pylist(), name


def test_csv_keeps_quoted_newlines_inside_a_prompt(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text('opening_prompt,topic\n"Is it fair\nto tax sugar in drinks?",health\n',
                    encoding="utf-8")
    table = load_prompts(str(path), "opening_prompt", "topic")
    assert table.to_pylist() == [{"text": "Is it fair\nto tax sugar in drinks?", "topic": "health"}]


@pytest.mark.parametrize(("name", "content", "message"), [
    ("p.jsonl", '{"prompt": "Is it fair to tax sugar?"}\n', "no text column 'opening_prompt'"),
    ("p.csv", "prompt\nIs it fair to tax sugar?\n", "no text column 'opening_prompt'"),
    ("p.jsonl", "", "prompt file is empty"),
    ("p.csv", "\n", "prompt file is empty"),
    ("p.parquet", "", "prompt file is empty"),
    ("p.csv", "opening_prompt\n", "prompt file has no rows"),
    ("p.txt", "Is it fair to tax sugar?\n", "unknown prompt file type ('.txt')"),
    ("p.jsonl", '{"opening_prompt": "ok?"}\n{oops\n', "line 2: not valid JSON"),
    ("p.jsonl", '{"opening_prompt": 42}\n', "line 1: 'opening_prompt' must be a string"),
])
def test_bad_prompt_files_raise_one_line_naming_the_file(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as err:
        load_prompts(str(path), "opening_prompt", "topic")
    text = str(err.value)
    assert text.startswith(f"{path}: ") and message in text
    assert "\n" not in text


def test_missing_column_in_parquet_lists_the_columns_found(tmp_path):
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"question": ["Is it fair to tax sugar?"], "lang": ["en"]}), path)
    with pytest.raises(DataError, match=r"no text column 'opening_prompt' \(found: question, lang\)"):
        load_prompts(str(path), "opening_prompt")


@pytest.mark.s3
@pytest.mark.ray
def test_prompts_load_from_s3_and_write_the_build_back(s3_bucket, capsys, ray_local):
    from persona_gen.storage import objects, resolve

    rows = _prism_like()
    body = "".join(json.dumps(r) + "\n" for r in rows).encode()
    objects.write_bytes_atomic(resolve(f"s3://{s3_bucket}/in/prism.jsonl"), body)
    code = _cli(["prompts", "build", "--set", f"prompts.source=s3://{s3_bucket}/in/prism.jsonl",
                 "--set", "stages.controversy.enabled=false", "--set", "prompts.n_topics=2",
                 *ECHO, "--output", f"s3://{s3_bucket}/runs", "--run-id", "r1"])
    assert code == 0, capsys.readouterr().err
    table = objects.read_table(resolve(f"s3://{s3_bucket}/runs/r1/prompts/prompts.parquet"))
    assert sorted(table.column("text").to_pylist()) == sorted(r["opening_prompt"] for r in rows)


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="prompt file not found"):
        load_prompts(str(tmp_path / "nope.jsonl"), "opening_prompt")


# ---- the command ---------------------------------------------------------------------------

def _cli(args: list[str]) -> int:
    with pytest.raises(SystemExit) as done:
        main(args)
    return int(done.value.code or 0)


# `prompts build` is the job's prompts phase: it answers each kept prompt once (the
# original), so these runs use the no-model engine on a local Ray.
ECHO = ["--set", "stages.defaults.model=echo"]


def _run_folder(root, run_id: str):
    return root / run_id / "prompts"


@pytest.mark.ray
def test_prompts_build_writes_prompts_and_stats(tmp_path, capsys, ray_local):
    code = _cli(["prompts", "build", "--set", "stages.controversy.enabled=false", "--set",
                 "run.seed=5", *ECHO, "--output", str(tmp_path), "--run-id", "r5"])
    assert code == 0, capsys.readouterr().err
    out = _run_folder(tmp_path, "r5")
    table = pq.read_table(out / "prompts.parquet")
    assert table.schema.names == ["prompt_id", "text", "topic", "split"]
    expected, _ = build_prompts(NO_MODEL, None, seed=5)  # echo answers every prompt
    assert sorted(table.to_pylist(), key=str) == sorted(expected.to_pylist(), key=str)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["kept"] == table.num_rows and stats["classifier"] is None
    assert next(s for s in stats["steps"] if s["name"] == "original")["kept"] == table.num_rows
    printed = capsys.readouterr().out
    assert "question_mark" in printed and "min_words" in printed and "skipped" in printed


@pytest.mark.parametrize(("name", "content", "message"), [
    ("bad.jsonl", '{"question": "Is it fair to tax sugar?"}\n', "no text column"),
    ("bad.csv", "", "prompt file is empty"),
    ("bad.docx", "x", "unknown prompt file type"),
])
def test_prompts_build_bad_input_exits_non_zero_with_one_line_and_writes_no_data(
        tmp_path, capsys, name, content, message):
    src = tmp_path / name
    src.write_text(content, encoding="utf-8")
    out = tmp_path / "out"
    code = _cli(["prompts", "build", "--set", f"prompts.source={src}",
                 "--set", "stages.controversy.enabled=false", "--output", str(out),
                 "--run-id", "bad"])
    err = capsys.readouterr().err.strip()
    assert code == 65
    assert err.count("\n") == 0 and str(src) in err and message in err
    # Found by the checks before the run: only its manifest, which says why it failed
    # (and pins nothing: a run with no data is replaced by the next, fixed config).
    assert [p.name for p in out.rglob("*") if p.is_file()] == ["manifest.json"]
    manifest = json.loads((out / "bad" / "manifest.json").read_text())
    assert manifest["status"] == "failed" and message in manifest["failure"]["reason"]


@pytest.mark.ray
def test_prompts_build_runs_the_classifier_through_a_registered_engine(tmp_path, capsys,
                                                                         ray_local):
    # `echo` is the registry's no-model engine: it picks one of the offered choices, so
    # every row must come back labelled and the counts must add up.
    code = _cli(["prompts", "build", "--set", "stages.controversy.model=echo", *ECHO,
                 "--run", str(tmp_path / "c1"), "--json"])
    cap = capsys.readouterr()
    assert code == 0, cap.err
    out = _run_folder(tmp_path, "c1")
    stats = json.loads((out / "stats.json").read_text())
    printed = json.loads(cap.out)  # --json: the same stats, on stdout alone
    assert printed["run_id"] == "c1" and printed["stats"] == stats
    step = next(s for s in stats["steps"] if s["name"] == "controversy")
    assert stats["classifier"] == "echo" and step["errors"] == 0
    assert step["seen"] == step["kept"] + step["rejected"] and step["kept"] == stats["kept"]
    assert pq.read_table(out / "prompts.parquet").num_rows == stats["kept"]


def test_classifier_wording_comes_from_the_model_family():
    row = {"prompt_id": "p", "text": "Should cities ban cars?"}
    big, small = for_model("llama-3.1-8b-instruct"), for_model(SMALL)
    assert big.choices() == ["controversial", "not_controversial"]
    assert small.choices() == ["debatable", "factual"]
    assert "controversial" in big.messages(row)[1].content
    assert "debatable" in small.messages(row)[1].content
    # A model the registry does not know gets the paper's wording.
    assert for_model("not-registered").instruction == "controversial"
    # Each stage reads only its own offered words.
    assert parse_label("factual", INSTRUCTIONS[big.instruction]) is None
    with pytest.raises(ValueError, match="unknown classifier instruction"):
        ControversyStage(instruction="spicy")
