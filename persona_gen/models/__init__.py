"""Shipped model YAML files (one per model); read by persona_gen.engines.registry."""
