"""Entry script for `ray job submit`: PERSONA Bench (see persona-gen bench run --help).

    ray job submit --working-dir . -- python jobs/run_bench.py --config jobs/configs/bench_cpu.yaml
"""

from __future__ import annotations

import sys
from pathlib import Path

# `ray job submit --working-dir .` runs this file from the uploaded copy of the repo: make
# that copy's persona_gen win over any older one installed in the cluster image.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from persona_gen.cli.main import main

if __name__ == "__main__":
    main(["bench", "run", *sys.argv[1:]])
