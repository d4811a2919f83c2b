"""Stable ids and seeds for bench rows, so a resumed run can skip what is already done.

Ids hash the fields that define a row's work, never its position or the time, so the
same config over the same personas and prompts yields the same ids on every run.
"""

from __future__ import annotations

from persona_gen.hashing import hex_id, stable_seed


def request_id(model: str, mode: str, persona_id: str, prompt_id: str,
               ablated_attribute: str | None, k: int) -> str:
    """One answer request: `k` samples of `model` answering `prompt_id` for `persona_id`.

    `k` is part of the id because a request with another sample count is other work.
    """
    return hex_id("req", model, mode, persona_id, prompt_id, ablated_attribute, k, size=10)


def sample_id(request: str, sample_index: int) -> str:
    """One sampled answer of a request (pass@k keeps every sample)."""
    return hex_id("sample", request, sample_index, size=10)


def judgment_id(sample: str, judge_model: str, judge_persona: str | None = None) -> str:
    """One verdict on a sample. A judge that role-plays the reduced persona (leave-one-out
    with loo_judge_persona=reduced) gives other verdicts, so its ids differ; the full
    persona keeps the ids runs had before the option existed."""
    if judge_persona in (None, "full"):
        return hex_id("judge", sample, judge_model, size=10)
    return hex_id("judge", sample, judge_model, judge_persona, size=10)


def answer_seed(run_seed: int, model: str, mode: str, persona_id: str, prompt_id: str, k: int) -> int:
    """Sampling seed for a request, deliberately blind to the ablated attribute.

    A leave-one-out request and its full-persona twin then draw the same random numbers,
    so differences between their verdicts come from the persona text, not sampling noise.
    """
    return stable_seed("seed", run_seed, model, mode, persona_id, prompt_id, k)
