"""Configuration: strict pydantic models loaded from YAML with dotted-key overrides."""

from persona_gen.config.base import StrictModel
from persona_gen.config.loader import apply_overrides, load_config, load_yaml_model

__all__ = ["StrictModel", "apply_overrides", "load_config", "load_yaml_model"]
