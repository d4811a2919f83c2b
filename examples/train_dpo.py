"""Train a model with TRL's DPOTrainer on a persona-gen export, then bench it against its base.

The loop the PERSONA testbed exists for (Castricato et al., arXiv 2407.17387):

    persona-gen run --config jobs/configs/paper_8xh100.yaml                # 1. generate pairs
    persona-gen export --run RUN --format trl-dpo --out ./dpo              #    export them
    python examples/train_dpo.py ./dpo --base MODEL --out ./trained        # 2. train
    persona-gen bench run --config BENCH.yaml --model ./trained --run-id trained   # 3. bench
    persona-gen bench run --config BENCH.yaml --model MODEL --run-id base
    persona-gen bench compare ROOT/base ROOT/trained                       #    and compare

The export's default DPO view (verified pairs, neither side cut, the persona as the
system turn) is read with `datasets`; the trained weights and tokenizer (with its chat
template) are saved as a Hugging Face folder, which `bench run --model` takes as it is.
On CPU with the bundled model a few steps show the plumbing, not quality.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("export", help="Folder of a `persona-gen export --format trl-dpo`.")
    p.add_argument("--base", required=True,
                   help="Model to train: a Hugging Face folder or id (e.g. the bundled model's "
                        "folder, `persona-gen models prepare` prints it).")
    p.add_argument("--out", required=True, type=Path, help="Folder for the trained model.")
    p.add_argument("--max-steps", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--learning-rate", type=float, default=5e-6)
    p.add_argument("--beta", type=float, default=0.1, help="DPO's beta.")
    p.add_argument("--max-length", type=int, default=1024)
    p.add_argument("--cpu", action="store_true", help="Train on CPU (no GPU).")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    # Heavy imports after parsing: --help stays instant.
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    if not Path(args.export).is_dir():
        print(f"{args.export}: not a folder (expected a trl-dpo export)", file=sys.stderr)
        return 2
    train = datasets.load_dataset(str(args.export))["train"]
    if train.num_rows == 0:
        print(f"{args.export}: no training pairs", file=sys.stderr)
        return 2
    tokenizer = AutoTokenizer.from_pretrained(args.base)
    model = AutoModelForCausalLM.from_pretrained(args.base)
    config = DPOConfig(output_dir=str(args.out / "checkpoints"), max_steps=args.max_steps,
                       per_device_train_batch_size=args.batch_size,
                       learning_rate=args.learning_rate, beta=args.beta, logging_steps=1,
                       report_to=[], save_strategy="no", max_length=args.max_length,
                       use_cpu=args.cpu, dataloader_num_workers=0, seed=args.seed)
    trainer = DPOTrainer(model=model, args=config, train_dataset=train,
                         processing_class=tokenizer)
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    if not losses or not all(math.isfinite(x) for x in losses):
        print(f"training diverged (losses {losses})", file=sys.stderr)
        return 1
    # A plain Hugging Face folder: config.json, weights, tokenizer and chat template.
    trainer.save_model(str(args.out))
    tokenizer.save_pretrained(str(args.out))
    print(f"trained {trainer.state.global_step} steps on {train.num_rows} pairs "
          f"(loss {losses[0]:.4f} -> {losses[-1]:.4f}); saved {args.out}", file=sys.stderr)
    print(f"next: persona-gen bench run --config BENCH.yaml --model {args.out} --run-id trained",
          file=sys.stderr)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
