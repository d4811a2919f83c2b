"""Publish a run as a Hugging Face dataset folder: Parquet shards, a `personas` config and a
dataset card, optionally with TRL's conversational preference columns.

`export_run(ref, target, options)` streams the run's pair blocks into sharded split files
(memory stays flat as the run grows), checks every block's schema first, and moves the
folder into place only when it is complete.
"""

from persona_gen.export.writer import ExportOptions, ExportResult, export_run

__all__ = ["ExportOptions", "ExportResult", "export_run"]
