"""Object storage: URIs (paths, s3://, gs://, az://) to pyarrow filesystems, atomic small
objects, run addresses, checks."""

from persona_gen.storage.runref import RunRef
from persona_gen.storage.settings import S3Settings, StorageSettings
from persona_gen.storage.uri import Location, resolve

__all__ = ["Location", "RunRef", "S3Settings", "StorageSettings", "resolve"]
