"""Train / held-out split stratified by topic (PERSONA, arXiv 2407.17387: topics covered evenly in both).

Each topic holds out its share of prompts; the rounding remainders go to the topics with
the largest fractional parts, so the total held out is exactly round(fraction * N) (868 of
3,868 with the default fraction) and no topic is more than one prompt off its share.
"""

from __future__ import annotations

import math
from collections import Counter

from persona_gen.prompts.ids import stage_rng

TRAIN = "train"
HELDOUT = "heldout"


def heldout_quotas(counts: dict[str, int], fraction: float) -> dict[str, int]:
    """Prompts to hold out per topic, by largest remainder."""
    total = sum(counts.values())
    target = math.floor(fraction * total + 0.5)
    exact = {t: fraction * n for t, n in counts.items()}
    quotas = {t: math.floor(x) for t, x in exact.items()}
    remainder = target - sum(quotas.values())
    # Largest fractional part first; ties to the bigger topic, then by name (deterministic).
    order = sorted(counts, key=lambda t: (-(exact[t] - quotas[t]), -counts[t], t))
    for t in order[:max(remainder, 0)]:
        quotas[t] += 1
    return quotas


def stratified_split(prompt_ids: list[str], topics: list[str], fraction: float,
                     seed: int) -> list[str]:
    """'train' or 'heldout' per prompt.

    Within a topic, prompts are ordered by prompt_id before the seeded shuffle, so the
    split depends on the set of prompts and the seed, not on the file's row order.
    """
    counts = Counter(topics)
    quotas = heldout_quotas(dict(counts), fraction)
    rng = stage_rng(seed, "prompts.split")
    by_topic: dict[str, list[int]] = {}
    for i, topic in enumerate(topics):
        by_topic.setdefault(topic, []).append(i)
    out = [TRAIN] * len(prompt_ids)
    for topic in sorted(by_topic):
        rows = sorted(by_topic[topic], key=lambda i: prompt_ids[i])
        for j in rng.permutation(len(rows))[: quotas[topic]]:
            out[rows[int(j)]] = HELDOUT
    return out


def split_counts(topics: list[str], splits: list[str]) -> dict[str, dict[str, int]]:
    """{topic: {'train': n, 'heldout': n}} for reports and tests."""
    out: dict[str, dict[str, int]] = {}
    for topic, split in zip(topics, splits, strict=True):
        row = out.setdefault(topic, {TRAIN: 0, HELDOUT: 0})
        row[split] += 1
    return dict(sorted(out.items()))


__all__ = ["HELDOUT", "TRAIN", "heldout_quotas", "split_counts", "stratified_split"]
