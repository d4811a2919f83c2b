"""Procedural Big Five: one of five levels per trait, drawn from population norms.

Model. Each trait is a BFI-2 domain score (Soto, C. J., & John, O. P. (2017). The next Big
Five Inventory (BFI-2): Developing and assessing a hierarchical model with 15 facets to
enhance bandwidth, fidelity, and predictive power. Journal of Personality and Social
Psychology, 113(1), 117-143). A person's domain score (the mean of 12 items on a 1-5 scale)
is treated as normal with the norm mean and SD below; the level is then read off the
z-score with fixed cut-points at -1.5, -0.5, +0.5 and +1.5 SD.

What the numbers do. Because the level depends only on z, the level frequencies follow
from the cut-points alone: about 6.7% Extremely Low, 24.2% Low, 38.3% Average, 24.2% High
and 6.7% Extremely High for every trait (`level_probabilities`). The means/SDs fix the raw
domain score (`sample_scores`) and are the place to add group norms later.

Caveats, stated plainly:
- The mean/SD figures below were entered from memory of the BFI-2 validation samples
  (adult Internet sample) and could not be checked against the paper on this offline
  machine; verify them before publishing raw scores. They do not change the levels.
- Traits are drawn independently; real domain scores correlate modestly.
- No sex or age adjustment: we have no citable adjustment figures here, so none is made.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from persona_gen.config.base import StrictModel

Level = Literal["Extremely Low", "Low", "Average", "High", "Extremely High"]
LEVELS: tuple[Level, ...] = get_args(Level)

# z-score cut-points between consecutive levels (our choice: 1-SD wide middle bands).
CUT_POINTS: tuple[float, ...] = (-1.5, -0.5, 0.5, 1.5)

# Render names (the familiar labels) in render order.
TRAITS: tuple[str, ...] = (
    "Openness", "Conscientiousness", "Extraversion", "Agreeableness", "Neuroticism",
)


@dataclass(frozen=True)
class TraitNorm:
    bfi2_domain: str
    """The BFI-2's own name for the domain."""
    mean: float
    sd: float


# BFI-2 domain norms, 1-5 scale (Soto & John 2017, adult Internet validation sample).
# Unverified offline: see the module docstring. Levels do not depend on these values.
BFI2_NORMS: dict[str, TraitNorm] = {
    "Openness": TraitNorm("Open-Mindedness", 3.92, 0.64),
    "Conscientiousness": TraitNorm("Conscientiousness", 3.43, 0.74),
    "Extraversion": TraitNorm("Extraversion", 3.23, 0.77),
    "Agreeableness": TraitNorm("Agreeableness", 3.68, 0.61),
    "Neuroticism": TraitNorm("Negative Emotionality", 3.07, 0.86),
}


class BigFive(StrictModel):
    """One level per trait; the persona stores and shows only these levels."""

    openness: Level
    conscientiousness: Level
    extraversion: Level
    agreeableness: Level
    neuroticism: Level

    def render(self) -> str:
        """'Openness: High, Conscientiousness: Average, ...' in TRAITS order."""
        return ", ".join(f"{t}: {getattr(self, t.lower())}" for t in TRAITS)

    @classmethod
    def parse(cls, text: str) -> BigFive:
        """Inverse of `render`; raises ValueError on anything else."""
        parts = [p.strip() for p in text.split(",")]
        values: dict[str, str] = {}
        for part in parts:
            name, sep, level = part.partition(":")
            if not sep:
                raise ValueError(f"not a 'Trait: Level' pair: {part!r}")
            values[name.strip().lower()] = level.strip()
        return cls.model_validate(values)


def level_for_z(z: float) -> Level:
    """The level whose z-band holds z (bands are closed on the left)."""
    index = sum(1 for cut in CUT_POINTS if z >= cut)
    return LEVELS[index]


def _normal_cdf(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def level_probabilities() -> dict[Level, float]:
    """Expected share of each level in the population (same for every trait)."""
    edges = [-math.inf, *CUT_POINTS, math.inf]
    return {
        level: _normal_cdf(hi) - (0.0 if lo == -math.inf else _normal_cdf(lo))
        for level, lo, hi in zip(LEVELS, edges[:-1], edges[1:], strict=True)
    }


def sample_scores(rng: np.random.Generator) -> dict[str, float]:
    """Raw domain scores on the BFI-2 scale, one per trait, in TRAITS order."""
    return {t: float(rng.normal(BFI2_NORMS[t].mean, BFI2_NORMS[t].sd)) for t in TRAITS}


def levels_from_scores(scores: dict[str, float]) -> BigFive:
    levels = {
        t.lower(): level_for_z((scores[t] - BFI2_NORMS[t].mean) / BFI2_NORMS[t].sd)
        for t in TRAITS
    }
    return BigFive.model_validate(levels)


def sample_big_five(rng: np.random.Generator) -> BigFive:
    return levels_from_scores(sample_scores(rng))
