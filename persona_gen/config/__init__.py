"""Configuration machinery: strict pydantic models loaded from YAML with dotted-key overrides.

The run's own configuration (`RunConfig`) is in persona_gen.run.config.
"""

from persona_gen.config.base import StrictModel
from persona_gen.config.loader import apply_overrides, load_yaml_model

__all__ = ["StrictModel", "apply_overrides", "load_yaml_model"]
