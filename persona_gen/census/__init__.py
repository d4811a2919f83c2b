"""Census microdata (ACS PUMS) -> weighted samples of real people."""
