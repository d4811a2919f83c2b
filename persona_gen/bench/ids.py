"""Stable ids and seeds for bench rows, so a resumed run can skip what is already done.

Ids hash the fields that define a row's work, never its position or the time, so the
same config over the same personas and prompts yields the same ids on every run.
"""

from __future__ import annotations

import hashlib
import json


def _digest(parts: list[object], size: int) -> bytes:
    # JSON keeps the fields apart ("a","bc" != "ab","c") and spells None as null.
    return hashlib.blake2b(json.dumps(parts).encode(), digest_size=size).digest()


def request_id(model: str, mode: str, persona_id: str, prompt_id: str,
               ablated_attribute: str | None, k: int) -> str:
    """One answer request: `k` samples of `model` answering `prompt_id` for `persona_id`.

    `k` is part of the id because a request with another sample count is other work.
    """
    return _digest(["req", model, mode, persona_id, prompt_id, ablated_attribute, k], 10).hex()


def sample_id(request: str, sample_index: int) -> str:
    """One sampled answer of a request (pass@k keeps every sample)."""
    return _digest(["sample", request, sample_index], 10).hex()


def judgment_id(sample: str, judge_model: str) -> str:
    return _digest(["judge", sample, judge_model], 10).hex()


def answer_seed(run_seed: int, model: str, mode: str, persona_id: str, prompt_id: str, k: int) -> int:
    """Sampling seed for a request, deliberately blind to the ablated attribute.

    A leave-one-out request and its full-persona twin then draw the same random numbers,
    so differences between their verdicts come from the persona text, not sampling noise.
    """
    raw = _digest(["seed", run_seed, model, mode, persona_id, prompt_id, k], 4)
    return int.from_bytes(raw, "big") & 0x7FFFFFFF
