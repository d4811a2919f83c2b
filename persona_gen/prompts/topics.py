"""Topics: the file's own topic column when complete, else TF-IDF + k-means (seeded).

A k-means topic is named by the highest-weighted terms of its centroid, e.g.
'tax / rich / income', so reports and the split can be read without the cluster ids.
"""

from __future__ import annotations

import warnings

import numpy as np

from persona_gen.prompts.ids import stage_rng

FALLBACK_TOPIC = "general"


def column_topics(topics: list[str | None]) -> list[str] | None:
    """The file's topics, trimmed, when every prompt has one; otherwise None."""
    cleaned = [t.strip() if isinstance(t, str) else "" for t in topics]
    return cleaned if cleaned and all(cleaned) else None


def kmeans_topics(texts: list[str], n_topics: int, seed: int, label_terms: int = 3) -> list[str]:
    """One topic label per text. Deterministic for a given seed and input order."""
    from sklearn.cluster import KMeans
    from sklearn.feature_extraction.text import TfidfVectorizer

    if not texts:
        return []
    k = min(n_topics, len(texts))
    vectorizer = TfidfVectorizer(stop_words="english", sublinear_tf=True,
                                 token_pattern=r"(?u)\b[^\W\d_]{2,}\b")
    try:
        matrix = vectorizer.fit_transform(texts)
    except ValueError:
        # Every word was a stop word (or there were none): nothing to cluster on.
        return [FALLBACK_TOPIC] * len(texts)
    if k <= 1:
        return [_label(np.asarray(matrix.mean(axis=0)).ravel(), vectorizer, label_terms)] * len(texts)
    random_state = int(stage_rng(seed, "prompts.topics").integers(0, 2**31 - 1))
    model = KMeans(n_clusters=k, n_init=10, random_state=random_state)
    with warnings.catch_warnings():
        # Fewer distinct prompts than clusters is fine for tiny sets; the labels cope.
        warnings.simplefilter("ignore")
        assignment = model.fit_predict(matrix)
    names = _unique([_label(c, vectorizer, label_terms) for c in model.cluster_centers_])
    return [names[c] for c in assignment]


def _label(centroid: np.ndarray, vectorizer: object, n_terms: int) -> str:
    terms = vectorizer.get_feature_names_out()  # type: ignore[attr-defined]
    # Ties broken by the term itself, so labels never depend on sort stability.
    order = sorted(range(len(terms)), key=lambda i: (-centroid[i], terms[i]))
    top = [terms[i] for i in order[:n_terms] if centroid[i] > 0]
    return " / ".join(top) or FALLBACK_TOPIC


def _unique(names: list[str]) -> list[str]:
    out: list[str] = []
    for name in names:
        candidate, n = name, 2
        while candidate in out:
            candidate, n = f"{name} ({n})", n + 1
        out.append(candidate)
    return out
