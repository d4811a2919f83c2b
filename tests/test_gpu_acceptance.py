"""benchmarks/gpu_acceptance.py, the script for the first GPU, run here on CPU with the
bundled model (`--cpu`), so that it cannot rot while no GPU is at hand."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_acceptance.py"


def test_the_script_explains_itself():
    done = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True,
                          text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    for option in ("--model", "--tp", "--cpu", "--requests"):
        assert option in done.stdout
    assert "LLM.generate" in done.stdout and "make test-acceptance" in done.stdout


@pytest.mark.acceptance
@pytest.mark.model
@pytest.mark.ray
@pytest.mark.timeout(2400)
def test_cpu_acceptance_passes():
    done = subprocess.run([sys.executable, str(SCRIPT), "--cpu", "--json"], capture_output=True,
                          text=True, timeout=2300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-4000:]
    figures = json.loads(done.stdout)
    assert figures["requests"] == 64 and figures["pipeline_errors"] == 0
    settings = figures["settings"]
    assert settings["resolved_by"] == "vllm" and settings["gpu_class"] == "cpu"
    assert (settings["max_num_seqs"], settings["max_num_batched_tokens"]) == (256, 4096)
    # The pipeline's engine runs what vLLM's offline LLM class picks by itself on CPU.
    assert figures["offline"]["max_num_seqs"] == settings["max_num_seqs"]
    assert figures["offline"]["max_num_batched_tokens"] == settings["max_num_batched_tokens"]
    assert figures["offline"]["tokens"] > 0 and figures["pipeline_tok_s"] > 0
    assert figures["json_rows"] == 8 and figures["json_rows_differing"] == 0
