"""One run: its recipe (every phase and stage, declared once), its config, its address
(RunRef), its execution (`run.execute`), manifest and status, and synthetic inputs for
benchmarks and tests."""

from persona_gen.storage.runref import RunRef

__all__ = ["RunRef"]
