"""Entry script for `ray job submit`: PERSONA Bench (see persona-gen bench run --help).

    ray job submit --working-dir . -- python jobs/run_bench.py --config jobs/configs/bench_cpu.yaml
"""

from __future__ import annotations

import sys

from persona_gen.cli.main import main

if __name__ == "__main__":
    main(["bench", "run", *sys.argv[1:]])
