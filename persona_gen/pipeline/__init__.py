"""Ray Data execution: actor pools holding engines, streaming writes, resumption."""
