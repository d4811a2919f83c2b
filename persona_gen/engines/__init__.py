"""Engines: one interface for every language-model call (vLLM, HTTP, no-model echo)."""
