"""Entry script for `ray job submit`: the whole feedback job (see persona-gen run --help).

    ray job submit --working-dir . -- python jobs/generate_feedback.py \
        --config jobs/configs/paper_8xh100.yaml --run-id paper-8xh100-v1

Inside a Ray job, RAY_ADDRESS points at the cluster, so the job's actors spread over it.
Submitting again with the same --run-id resumes where the last attempt stopped. Like every
run, it first checks models, engines, inputs, output and the engine layout against the
cluster (`--check`: only that), so a mistake fails in seconds, before any engine starts.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `ray job submit --working-dir .` runs this file from the uploaded copy of the repo: make
# that copy's persona_gen win over any older one installed in the cluster image.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from persona_gen.cli.main import main

if __name__ == "__main__":  # vLLM engines start worker processes: keep the guard
    main(["run", *sys.argv[1:]])
