"""The package's layers, lowest first: a module imports only from its own layer or below.

The method's packages are layers of their own, in the method's order (census -> personas ->
prompts -> plan -> feedback -> bench); the machinery beneath them (storage, engines,
pipeline) knows nothing of the method; `run` owns a run (its recipe, config, manifest,
execution); `cost`, `export` and `cli` read runs. `tests/test_import_graph.py` holds every
module to this.
"""

from __future__ import annotations

LAYERS: tuple[tuple[str, ...], ...] = (
    # Foundations: the package itself, errors, logging, hashing, config machinery, data.
    ("", "errors", "log", "hashing", "config", "layers", "models", "templates"),
    ("storage",),
    ("engines",),
    ("pipeline",),
    ("census",),
    ("personas",),
    ("prompts",),
    ("plan",),
    ("feedback",),
    ("bench",),
    ("run",),
    ("cost", "export"),
    ("cli",),
)


def layer_of(package: str) -> int:
    """The layer index of a top-level package of persona_gen ('' for the package itself)."""
    for i, members in enumerate(LAYERS):
        if package in members:
            return i
    raise KeyError(f"package '{package}' is in no layer; add it to persona_gen/layers.py")
