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
    """One bar per attribute: its TVD, the expected TVD and the 95th percentile of an ideal
    draw of the same n, and the fixed threshold line where one was set."""
    attrs = report.attributes
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(attrs) + 1.5))
    names = [a.attribute for a in attrs][::-1]
    values = [a.tvd for a in attrs][::-1]
    colors = ["#c0392b" if a.flagged else "#2e86c1" for a in attrs][::-1]
    ax.barh(names, values, color=colors, label="TVD")
    ax.scatter([a.noise_floor for a in attrs][::-1], names, color="black", marker="|", s=120,
               label="expected TVD of an ideal draw", zorder=3)
    band = [(a.noise_p95, name) for a, name in zip(attrs[::-1], names, strict=True)
            if a.noise_p95 is not None]
    if band:
        ax.scatter([b for b, _ in band], [n for _, n in band], color="#c0392b", marker="|",
                   s=120, label="95th percentile (flag above)", zorder=3)
    if report.threshold is not None:
        ax.axvline(report.threshold, color="#c0392b", linestyle="--", label="fixed threshold")
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
