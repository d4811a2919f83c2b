"""persona-gen: census-grounded personas and persona-specific preference data at scale."""

__version__ = "0.1.0"
