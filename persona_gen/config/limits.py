"""Per-stage output limits and the one retry for answers cut at that limit."""

from __future__ import annotations

from typing import Any


def fill_stage_limits(data: Any, stages: tuple[str, ...], default: int | None = None) -> Any:
    """Raw config input with absent `<stage>_max_tokens` set to `default` (when given) and
    absent `<stage>_retry_max_tokens` set to twice the stage's limit, so that every limit
    reads as a plain number (the recipe, plan-cost and the manifest read them by key).

    Why twice: our choice, the paper (arXiv 2407.17387) states no limits. A cut answer
    usually needs a little more room, and doubling bounds the extra cost at one more call.
    `<stage>_retry_max_tokens: 0` turns the retry off.
    """
    if not isinstance(data, dict):
        return data
    data = dict(data)
    for stage in stages:
        key = f"{stage}_max_tokens"
        if data.get(key) is None and default is not None:
            data[key] = default
        retry = f"{stage}_retry_max_tokens"
        if data.get(retry) is None and data.get(key) is not None:
            data[retry] = 2 * int(data[key])
    return data
