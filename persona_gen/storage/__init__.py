"""Object storage: URIs to pyarrow filesystems, atomic small objects, run layout, checks."""

from persona_gen.storage.layout import RunLayout
from persona_gen.storage.settings import S3Settings
from persona_gen.storage.uri import Location, resolve

__all__ = ["Location", "RunLayout", "S3Settings", "resolve"]
