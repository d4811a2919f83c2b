"""Benchmark: generation throughput of a model engine at several batch sizes (default: the
bundled SmolLM2-135M-Instruct in vLLM on this machine's CPU, batches 1 and 32).

    .venv/bin/python bench/engine_throughput.py [--model NAME] [--batches 1,32]
                                                [--max-tokens 64] [--single-requests 4]
                                                [--echo-rows 100000]

One engine serves every batch size (started once, timed separately). Batch 1 is measured
over --single-requests sequential calls; larger batches are one call each. Output tokens
are what the engine reports, so early stops count as they happen. Also prints the echo
engine's request rate, the ceiling the pipeline's own overhead is measured against.
Prints tables; asserts nothing.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

QUESTIONS = [
    "Should cities ban cars from their centres?",
    "Is it fair to tax inherited wealth heavily?",
    "What makes a good neighbour?",
    "Should voting be compulsory?",
    "How much screen time is right for a child?",
    "Is remote work good for society?",
    "Should zoos exist?",
    "What do we owe our parents?",
]


def requests(count: int, max_tokens: int, offset: int = 0) -> list:
    from persona_gen.engines import ChatRequest, Message, Sampling

    return [ChatRequest(
        id=f"r{offset + i}",
        messages=[Message(role="user", content=f"{QUESTIONS[(offset + i) % len(QUESTIONS)]} "
                                                f"Answer in a short paragraph. (#{offset + i})")],
        sampling=Sampling(max_tokens=max_tokens, temperature=0.7, seed=offset + i),
    ) for i in range(count)]


def measure(engine, batch: int, calls: int, max_tokens: int, offset: int) -> dict[str, float]:
    prompt = output = failed = 0
    seconds = 0.0
    for call in range(calls):
        reqs = requests(batch, max_tokens, offset + call * batch)
        started = time.perf_counter()
        results = engine.generate(reqs)
        seconds += time.perf_counter() - started
        prompt += sum(r.prompt_tokens for r in results)
        output += sum(r.output_tokens for r in results)
        failed += sum(not r.ok for r in results)
    n = batch * calls
    return {"batch": batch, "requests": n, "prompt": prompt, "output": output,
            "seconds": seconds, "tok_s": output / seconds, "req_s": n / seconds,
            "failed": failed}


def echo_rate(rows: int) -> tuple[float, float]:
    """(requests/s, seconds) for the echo engine on persona-sized prompts."""
    from persona_gen.engines import ChatRequest, Message, Sampling, create_engine

    persona = "\n".join(f"attribute {i}: a value of several words" for i in range(33))
    reqs = [ChatRequest(id=str(i), messages=[
        Message(role="system", content=persona),
        Message(role="user", content=QUESTIONS[i % len(QUESTIONS)])],
        sampling=Sampling(max_tokens=256, seed=i)) for i in range(rows)]
    engine = create_engine("echo")
    started = time.perf_counter()
    engine.generate(reqs)
    seconds = time.perf_counter() - started
    return rows / seconds, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--batches", default="1,32", help="comma-separated batch sizes")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--single-requests", type=int, default=4,
                        help="sequential calls measured at batch 1")
    parser.add_argument("--echo-rows", type=int, default=100_000,
                        help="rows for the echo-engine rate (0: skip)")
    args = parser.parse_args()
    from persona_gen import log

    log.keep_stdout_for_results()  # vLLM logs to stdout by default; stdout carries the table
    log.configure()
    batches = [int(b) for b in args.batches.split(",") if b.strip()]

    from persona_gen.engines import create_engine

    started = time.perf_counter()
    engine = create_engine(args.model)
    start_s = time.perf_counter() - started
    try:
        engine.generate(requests(1, 8, offset=10_000))  # warm-up: first-call costs excluded
        rows = [measure(engine, b, args.single_requests if b == 1 else 1, args.max_tokens,
                        offset=1000 * b) for b in batches]
    finally:
        engine.close()

    import torch

    try:
        import vllm

        vllm_version = vllm.__version__
    except ImportError:
        vllm_version = "-"
    device = "CPU" if not torch.cuda.is_available() else torch.cuda.get_device_name(0)
    print(f"\nengine throughput: {args.model} on {device} ({platform.processor() or platform.machine()}, "
          f"vllm {vllm_version}, torch {torch.__version__}), max_tokens={args.max_tokens}, "
          f"engine start {start_s:.1f} s")
    header = f"{'batch':>5}  {'requests':>8}  {'prompt tok':>10}  {'output tok':>10}  " \
             f"{'seconds':>8}  {'output tok/s':>12}  {'requests/s':>10}  {'failed':>6}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['batch']:>5}  {r['requests']:>8}  {r['prompt']:>10}  {r['output']:>10}  "
              f"{r['seconds']:>8.2f}  {r['tok_s']:>12.1f}  {r['req_s']:>10.2f}  {r['failed']:>6}")
    if args.echo_rows:
        rate, seconds = echo_rate(args.echo_rows)
        print(f"\necho engine: {args.echo_rows} requests (persona-sized prompts, max_tokens=256) "
              f"in {seconds:.2f} s = {rate:,.0f} requests/s")


if __name__ == "__main__":
    main()
