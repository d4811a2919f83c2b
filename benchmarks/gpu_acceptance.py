"""GPU acceptance: one command that tells, on the first GPU, whether the engine path is right.

    .venv/bin/python benchmarks/gpu_acceptance.py --model llama-3.1-8b-instruct
    .venv/bin/python benchmarks/gpu_acceptance.py --model /data/my-model-folder --tp 2
    .venv/bin/python benchmarks/gpu_acceptance.py --cpu          # the bundled model, on CPU

It prints (tables on stdout, logs on stderr):
1. the engine settings the pipeline's engine resolved (its `engine_settings` line: scheduler
   values, KV-cache blocks and tokens measured by vLLM beside the estimate that `sim` and
   `cost` use, tensor parallelism, dtype), and what vLLM's offline `LLM` class resolved;
2. the same critique requests (>= 512 on a GPU) through vLLM's offline `LLM.generate`, what
   a user would run instead, then through the pipeline (Ray Data, an engine host, a commit
   per block): output tok/s of each and their ratio;
3. one JSON-schema block with per-row seeds, run twice through the pipeline: whether both
   runs gave the same text for every row.

Exit status: 0 when every row of every run succeeded and the two JSON runs agree; 1
otherwise. About 4-6 minutes for an 8B model on one H100 (two engine starts, weights
already downloaded); `--tp 2` runs the same on two GPUs. `--cpu` (the bundled model, 64
requests, greedy JSON: vLLM on CPU drops per-request seeds, see vllm_engine) is what
`make test-acceptance` runs, so the script cannot rot while no GPU is at hand.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
import yaml
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline_overhead import critique_only

from persona_gen import log
from persona_gen.engines.base import ChatResult, Message, Sampling
from persona_gen.engines.registry import MODELS_DIR_ENV, ModelSpec, get_spec
from persona_gen.pipeline.chain import Chain, Step, block_file
from persona_gen.pipeline.engine_host import EngineHosts
from persona_gen.pipeline.executor import run_chains
from persona_gen.pipeline.ray_session import ray_session
from persona_gen.pipeline.stage import DeclaredStage, OutputError
from persona_gen.run.config import RunConfig
from persona_gen.storage import objects
from persona_gen.storage.runref import RunRef

log.keep_stdout_for_results()  # vLLM logs to stdout by default; stdout carries the tables
BUNDLED = "smollm2-135m-instruct"
STANCE_SCHEMA = {
    "type": "object",
    "properties": {"stance": {"type": "string", "enum": ["agree", "disagree", "unsure"]},
                   "reason": {"type": "string", "maxLength": 160}},
    "required": ["stance", "reason"], "additionalProperties": False}


@dataclass(frozen=True)
class StanceStage(DeclaredStage):
    """The persona's stance on the prompt, as JSON (the determinism check)."""

    sampling: Sampling
    name: ClassVar[str] = "stance"
    id_column: ClassVar[str] = "pair_id"
    needs: ClassVar[tuple[str, ...]] = ("pair_id", "persona", "instruction")
    outputs: ClassVar[pa.Schema] = pa.schema([("stance", pa.string()), ("text", pa.string())])

    def json_schema(self) -> dict[str, Any]:
        return STANCE_SCHEMA

    def messages(self, row: dict[str, Any]) -> list[Message]:
        return [Message(role="system", content=f"You are this person:\n{row['persona']}"),
                Message(role="user", content=f"{row['instruction']}\nAnswer as JSON with "
                                             "your stance and a one-sentence reason.")]

    def parse(self, row: dict[str, Any], result: ChatResult) -> dict[str, Any]:
        if not result.parsed:
            raise OutputError("no JSON")
        return {"stance": result.parsed[0]["stance"], "text": result.text}


def model_file(args: argparse.Namespace, folder: Path) -> str:
    """The model to test, as a registry name the engine hosts resolve: a registered model
    (with --tp applied), or a model file written for a local folder."""
    if Path(args.model).expanduser().is_dir():
        src = Path(args.model).expanduser().resolve()
        spec = ModelSpec(name="acceptance-" + "".join(c if c.isalnum() else "-" for c in src.name),
                         engine="vllm", source=str(src), max_model_len=args.max_model_len,
                         runs_on=["cpu", "gpu"])
    else:
        spec = get_spec(args.model)
        if spec.engine != "vllm":
            raise SystemExit(f"--model {args.model}: engine '{spec.engine}', not vllm")
    if args.tp:
        spec = spec.model_copy(update={"tensor_parallel_size": args.tp})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{spec.name}.yaml").write_text(yaml.safe_dump(spec.model_dump(
        mode="json", exclude_unset=True) | {"name": spec.name, "engine": "vllm",
                                             "tensor_parallel_size": spec.tensor_parallel_size}))
    os.environ[MODELS_DIR_ENV] = str(folder)
    return spec.name


def run_config(args: argparse.Namespace, model: str) -> RunConfig:
    return RunConfig.model_validate({
        "run": {"seed": 3},
        "stages": {"defaults": {"model": model},
                   "critique": {"max_tokens": args.max_tokens, "retry_max_tokens": 0,
                                "temperature": 0.8}},
        "pipeline": {"batch_size": args.block, "actors": 1,
                     "num_gpus_per_actor": 0 if args.cpu else 1,
                     "num_cpus_per_actor": 1, "num_cpus_per_worker": 0.25,
                     "blocks_in_flight": args.blocks_in_flight,
                     "local_num_cpus": os.cpu_count() if not args.cpu else 2},
    })


def offline(spec: ModelSpec, prompts: list[list[int]], params: list[Any]) -> dict[str, Any]:
    """What a user would run: vLLM's offline LLM class with its own defaults, one generate."""
    from vllm import LLM

    from persona_gen.engines.sources import materialise
    from persona_gen.engines.vllm_engine import on_cpu

    cpu = on_cpu()
    if cpu:
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(spec.kv_cache_gib))
    kwargs: dict[str, Any] = {"model": materialise(str(spec.source)), "dtype": spec.dtype,
                              "max_model_len": spec.max_model_len, "seed": 0,
                              "tensor_parallel_size": spec.tensor_parallel_size,
                              "tokenizer_mode": spec.tokenizer_mode,
                              "enforce_eager": cpu if spec.enforce_eager is None else spec.enforce_eager}
    if not cpu:
        kwargs["gpu_memory_utilization"] = spec.gpu_memory_utilization
    started = time.perf_counter()
    llm = LLM(**kwargs)
    load_s = time.perf_counter() - started
    sched = llm.llm_engine.vllm_config.scheduler_config
    cache = llm.llm_engine.vllm_config.cache_config
    from vllm.inputs import TokensPrompt

    t0 = time.perf_counter()
    outs = llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params,
                        use_tqdm=False)
    seconds = time.perf_counter() - t0
    tokens = sum(len(c.token_ids) for o in outs for c in o.outputs)
    llm.llm_engine.engine_core.shutdown()
    del llm
    return {"tokens": tokens, "seconds": seconds, "load_s": load_s,
            "max_num_seqs": sched.max_num_seqs,
            "max_num_batched_tokens": sched.max_num_batched_tokens,
            "kv_cache_tokens": (cache.num_gpu_blocks or 0) * cache.block_size}


def offline_inputs(spec: ModelSpec, stage: Any, blocks: list[pa.Table]) -> tuple[list, list]:
    """The critique requests as the engine would send them: token ids and sampling."""
    from vllm import SamplingParams
    from vllm.tokenizers import get_tokenizer

    from persona_gen.engines.sources import materialise
    from persona_gen.engines.structured import effective_sampling
    from persona_gen.engines.vllm_engine import load_chat_template, on_cpu, render_prompt

    # The tokenizer the engine loads (vLLM's, in the model file's tokenizer mode).
    tokenizer = get_tokenizer(materialise(str(spec.source)), tokenizer_mode=spec.tokenizer_mode)
    template = load_chat_template(spec.chat_template)
    prompts, params = [], []
    cpu = on_cpu()
    for block in blocks:
        for req in stage.requests(block):
            s = effective_sampling(req.sampling, spec.sampling)
            prompts.append(render_prompt(tokenizer, req.messages, spec.system_role, template))
            params.append(SamplingParams(temperature=s.temperature, top_p=s.top_p,
                                         max_tokens=s.max_tokens,
                                         seed=None if cpu else s.seed))
    return prompts, params


def pipeline(chains: list[Chain], run: RunRef, cfg: RunConfig, hosts: EngineHosts,
             ) -> tuple[int, float, int]:
    """(output tokens, seconds from first block start to last commit, error rows)."""
    results = run_chains(chains, run, cfg.pipeline, hosts=hosts)
    steps = [s for r in results for s in r.steps if not s.resumed]
    seconds = max(s.finished_at for s in steps) - min(s.started_at for s in steps)
    return sum(s.output_tokens for s in steps), seconds, sum(s.errors for s in steps)


def json_block(run: RunRef, blocks: list[pa.Table], rows: int) -> None:
    """One block of the joined critique inputs, for the JSON stage."""
    table = pa.concat_tables(blocks).slice(0, rows).select(["pair_id", "persona", "instruction"])
    objects.write_table_atomic(block_file(run, "json-in", "b0"), table)


def compare(run: RunRef, a: str, b: str) -> tuple[int, int]:
    """(rows, rows whose text differs) between two runs of the JSON block."""
    ta = objects.read_table(block_file(run, a, "b0")).to_pylist()
    tb = {r["pair_id"]: r["text"] for r in objects.read_table(block_file(run, b, "b0")).to_pylist()}
    return len(ta), sum(1 for r in ta if tb.get(r["pair_id"]) != r["text"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--model", default="llama-3.1-8b-instruct",
                    help="a registered model name, or a local Hugging Face model folder")
    ap.add_argument("--tp", type=int, default=0,
                    help="tensor-parallel GPUs per engine (default: the model file's)")
    ap.add_argument("--cpu", action="store_true",
                    help="the bundled model on vLLM CPU, with CPU-sized counts")
    ap.add_argument("--requests", type=int, default=0,
                    help="critique requests (default 512 on a GPU, 64 with --cpu)")
    ap.add_argument("--max-tokens", type=int, default=0,
                    help="critique length cap (default 256 on a GPU, 32 with --cpu)")
    ap.add_argument("--block", type=int, default=0, help="rows per block (default 128, 16)")
    ap.add_argument("--blocks-in-flight", type=int, default=4)
    ap.add_argument("--json-rows", type=int, default=0, help="rows of the JSON block (64, 8)")
    ap.add_argument("--max-model-len", type=int, default=4096,
                    help="context for a local folder's model file")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = ap.parse_args()
    if args.cpu:
        args.model = BUNDLED
    args.requests = args.requests or (64 if args.cpu else 512)
    args.max_tokens = args.max_tokens or (32 if args.cpu else 256)
    args.block = args.block or (16 if args.cpu else 128)
    args.json_rows = args.json_rows or (8 if args.cpu else 64)
    log.configure()
    console = Console(width=160)
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="gpu-acceptance-") as tmp:
        model = model_file(args, Path(tmp) / "models")
        spec = get_spec(model)
        cfg = run_config(args, model)
        run = RunRef.at(tmp, "acceptance")
        chain, stage, blocks = critique_only(cfg, model, run, args.requests)
        n = sum(b.num_rows for b in blocks)
        # 1. vLLM's offline LLM.generate on the same requests.
        prompts, params = offline_inputs(spec, stage, blocks)
        base = offline(spec, prompts, params)
        # 2. The pipeline: Ray Data, one engine host, a commit per block.
        greedy = args.cpu  # vLLM on CPU drops per-request seeds: greedy is what repeats there
        stance = StanceStage(sampling=Sampling(max_tokens=96, seed=11,
                                               temperature=0.0 if greedy else 0.8))
        json_block(run, blocks, args.json_rows)
        with ray_session(cfg.pipeline), EngineHosts(cfg.pipeline, run.run_id) as hosts:
            hosts.get(model)  # started before the clock, as the offline engine was
            settings = hosts.settings.get(model, {})
            tokens, seconds, errors = pipeline([chain], run, cfg, hosts)
            runs = []
            for out in ("json-a", "json-b"):
                _, _, json_errors = pipeline(
                    [Chain(out, "json-in", (Step(stance, model, out),))], run, cfg, hosts)
                runs.append(json_errors)
        rows, differ = compare(run, "json-a", "json-b")
    off_tok_s = base["tokens"] / base["seconds"]
    pipe_tok_s = tokens / seconds
    figures = {"model": model, "requests": n, "settings": settings, "offline": base,
               "offline_tok_s": off_tok_s, "pipeline_tok_s": pipe_tok_s,
               "ratio": pipe_tok_s / off_tok_s, "pipeline_errors": errors,
               "json_rows": rows, "json_rows_differing": differ, "json_errors": runs,
               "json_sampling": "greedy" if greedy else "temperature 0.8, per-row seeds"}
    ok = errors == 0 and differ == 0 and not any(runs)
    if args.json:
        print(json.dumps(figures, indent=2, default=str))
        return 0 if ok else 1
    t = Table(title=f"engine settings: {model} ({settings.get('gpu_class')}), as vLLM resolved "
                    "them in the pipeline's engine host; the offline LLM class beside them")
    for c in ("", "max_num_seqs", "max_num_batched_tokens", "KV tokens (vLLM)",
              "KV tokens (estimate)", "KV blocks", "admission", "TP", "dtype"):
        t.add_column(c, justify="right")
    t.add_row("pipeline", str(settings.get("max_num_seqs")),
              str(settings.get("max_num_batched_tokens")), str(settings.get("kv_cache_tokens")),
              str(settings.get("kv_cache_tokens_estimate")), str(settings.get("kv_cache_blocks")),
              str(settings.get("admission_limit")), str(settings.get("tensor_parallel_size")),
              str(settings.get("dtype")))
    t.add_row("offline LLM", str(base["max_num_seqs"]), str(base["max_num_batched_tokens"]),
              str(base["kv_cache_tokens"]), "", "", "", str(spec.tensor_parallel_size),
              str(spec.dtype))
    console.print(t)
    t = Table(title=f"{n} critique requests, max_tokens {args.max_tokens}, temperature 0.8; "
                    f"pipeline: batch_size {args.block}, {args.blocks_in_flight} blocks in flight")
    for c in ("offline LLM.generate tok/s", "pipeline tok/s", "pipeline/offline",
              "output tokens (offline / pipeline)", "error rows"):
        t.add_column(c, justify="right")
    t.add_row(f"{off_tok_s:,.1f}", f"{pipe_tok_s:,.1f}", f"{pipe_tok_s / off_tok_s:.2f}",
              f"{base['tokens']:,} / {tokens:,}", str(errors))
    console.print(t)
    t = Table(title=f"one JSON-schema block of {rows} rows, run twice ({figures['json_sampling']})")
    for c in ("rows", "rows whose text differs", "error rows (run 1 / run 2)", "same text"):
        t.add_column(c, justify="right")
    t.add_row(str(rows), str(differ), f"{runs[0]} / {runs[1]}", "yes" if differ == 0 else "NO")
    console.print(t)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
