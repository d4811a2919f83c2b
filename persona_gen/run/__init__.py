"""One run of the job: its recipe (the stage graph, declared once), its address (RunRef),
the job that fills it (`run.job`), and its synthetic inputs for benchmarks and tests."""

from persona_gen.storage.runref import RunRef

__all__ = ["RunRef"]
