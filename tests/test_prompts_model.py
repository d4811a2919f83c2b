"""The controversy classifier with the real bundled model (vLLM on CPU, choice-constrained)."""

from __future__ import annotations

import pytest

from persona_gen.pipeline.stage import run_in_process
from persona_gen.prompts.build import select_prompts
from persona_gen.prompts.classify import LABEL_COLUMN, LABELS, ControversyStage
from persona_gen.prompts.config import PromptsConfig


@pytest.mark.model
def test_bundled_model_labels_every_prompt_or_records_an_error(bundled_engine):
    # The whole rule-filtered bundled set (about a hundred prompts) in batches of 64, as
    # `prompts build` sends it: batches this size make vLLM split prefills across steps.
    batch = select_prompts(PromptsConfig()).kept
    out = run_in_process(ControversyStage(), bundled_engine, batch, batch_size=64)
    assert out.column("prompt_id").to_pylist() == batch.column("prompt_id").to_pylist()
    labels = out.column(LABEL_COLUMN).to_pylist()
    errors = out.column("error").to_pylist()
    for text, label, error in zip(batch.column("text").to_pylist(), labels, errors, strict=True):
        assert (label in LABELS and error is None) or (label is None and error), (text, error)
    # Constrained decoding leaves the model nothing to answer but a label.
    assert all(label is not None for label in labels), [e for e in errors if e][:3]
