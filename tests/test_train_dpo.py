"""TRL's DPOTrainer trains on an export's default DPO view, as a user would: the real job
(echo engine) exported with `--format trl-dpo`, loaded with `datasets`, two steps with the
bundled model on CPU. Slow (minutes): `make test-train`, not `make test`."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.test_export import echo_run, export  # noqa: F401  (a fixture, used by name)

# About 20-30 s a step on an idle 2-core machine (SmolLM2-135M, CPU); far more on a busy one.
pytestmark = [pytest.mark.train, pytest.mark.ray, pytest.mark.timeout(1800)]


def test_dpo_trainer_trains_two_steps_on_the_default_dpo_view(
        echo_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from persona_gen.engines.bundled import ensure

    out = tmp_path / "dpo"
    assert export(capsys, echo_run, out, "--format", "trl-dpo")[0] == 0
    train = datasets.load_dataset(str(out))["train"]
    # The default view: verified pairs only, neither side cut, the persona framed as the user.
    assert train.num_rows >= 2 and set(train["preferred"]) == {"revision"}
    assert train[0]["prompt"][0]["role"] == "system"

    folder = ensure("smollm2-135m-instruct")
    args = DPOConfig(output_dir=str(tmp_path / "trained"), max_steps=2,
                     per_device_train_batch_size=1, learning_rate=1e-5, logging_steps=1,
                     report_to=[], save_strategy="no", max_length=512, use_cpu=True,
                     dataloader_num_workers=0, seed=0)
    trainer = DPOTrainer(model=AutoModelForCausalLM.from_pretrained(folder), args=args,
                         train_dataset=train,
                         processing_class=AutoTokenizer.from_pretrained(folder))
    trainer.train()
    assert trainer.state.global_step == 2
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)
    # Before its first update the policy is the reference model: the sigmoid DPO loss of
    # every pair is log 2, so the first step read a chosen and a rejected answer.
    assert losses[0] == pytest.approx(math.log(2), abs=1e-3)
