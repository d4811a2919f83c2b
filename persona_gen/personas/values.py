"""What counts as a missing attribute value, shared by rendering and rule checks."""

from __future__ import annotations

import math
from typing import Any


def is_missing(value: Any) -> bool:
    """None, blank, NaN, an empty list, or a census 'N/A (...)' not-applicable label."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    if isinstance(value, str):
        text = value.strip()
        return not text or text.upper().startswith("N/A")
    if isinstance(value, list | tuple):
        return all(is_missing(v) for v in value)
    return False
