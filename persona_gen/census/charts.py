"""PNG bar charts of a fidelity report (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import io
import math

import matplotlib

matplotlib.use("Agg")  # headless: servers and CI have no display

import matplotlib.pyplot as plt

from persona_gen.census.fidelity import FidelityReport

TOP_CATEGORIES = 10


def _png(fig) -> bytes:
    buf = io.BytesIO()
    # No timestamps or software tags in the file, so the same report gives the same bytes.
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def tvd_chart(report: FidelityReport) -> bytes:
    """One bar per attribute: its TVD, the sampling-noise floor and the threshold line."""
    attrs = report.attributes
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(attrs) + 1.5))
    names = [a.attribute for a in attrs][::-1]
    values = [a.tvd for a in attrs][::-1]
    colors = ["#c0392b" if a.flagged else "#2e86c1" for a in attrs][::-1]
    ax.barh(names, values, color=colors, label="TVD")
    ax.scatter([a.noise_floor for a in attrs][::-1], names, color="black", marker="|", s=120,
               label="sampling-noise floor", zorder=3)
    ax.axvline(report.threshold, color="#c0392b", linestyle="--", label="threshold")
    ax.set_xlabel("total-variation distance, sample vs weighted population")
    ax.set_title(f"Census fidelity: n={report.n}, seed={report.seed}, layout={report.layout}")
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)


def distributions_chart(report: FidelityReport) -> bytes:
    """Per attribute, the largest categories' shares in the sample and the population."""
    attrs = report.attributes
    cols = 3
    rows = max(1, math.ceil(len(attrs) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 3.6 * rows), squeeze=False)
    for ax, a in zip(axes.flat, attrs, strict=False):
        cats = a.categories[:TOP_CATEGORIES]
        ys = range(len(cats))
        ax.barh([y + 0.2 for y in ys], [c.population for c in cats], height=0.4,
                label="population (weighted)", color="#95a5a6")
        ax.barh([y - 0.2 for y in ys], [c.sample for c in cats], height=0.4, label="sample",
                color="#c0392b" if a.flagged else "#2e86c1")
        ax.set_yticks(list(ys), [c.label[:38] for c in cats], fontsize=7)
        ax.invert_yaxis()
        ax.set_title(f"{a.attribute} (TVD {a.tvd:.3f})", fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
    for ax in list(axes.flat)[len(attrs):]:
        ax.axis("off")
    if attrs:
        axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)
