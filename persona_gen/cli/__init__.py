"""The `persona-gen` command line."""
