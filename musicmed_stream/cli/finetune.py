"""``musicmed-stream finetune``: LoRA fine-tuning of MusicGen on MTG-Jamendo mood/theme tracks."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from musicmed_stream.finetune.train import PRECISIONS, FinetuneConfig

DEFAULTS = FinetuneConfig(jamendo=Path(), audio=Path(), model="", out=Path())


def run(args: argparse.Namespace) -> int:
    from musicmed_stream.finetune import finetune

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = FinetuneConfig(
        jamendo=Path(args.jamendo),
        audio=Path(args.audio),
        model=args.model,
        out=Path(args.out),
        split=args.split,
        epochs=args.epochs,
        learning_rate=args.lr,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        crop_seconds=args.crop_seconds,
        lora_r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        ffn=args.ffn,
        text_dropout=args.text_dropout,
        warmup_steps=args.warmup_steps,
        seed=args.seed,
        mixed_precision=args.mixed_precision,
        checkpoint_every=args.checkpoint_every,
        validate_every=args.validate_every,
        max_steps=args.max_steps,
        max_tracks=args.max_tracks,
        mapping=Path(args.mapping) if args.mapping else None,
        allow_download=args.allow_download,
        cpu=args.cpu,
        resume=not args.no_resume,
    )
    result = finetune(cfg)
    print(
        f"{result.adapter_dir}: {result.steps} steps on {result.examples} tracks "
        f"(skipped {sum(result.skipped.values())}: {result.skipped}), "
        f"loss {result.initial_loss:.4f} -> {result.final_loss:.4f}"
    )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    d = DEFAULTS
    parser = subparsers.add_parser(
        "finetune",
        help="fine-tune MusicGen with LoRA on MTG-Jamendo mood/theme tracks",
        description=(
            "LoRA fine-tuning of the MusicGen decoder on the MTG-Jamendo mood/theme subset, with prompts "
            "'mood, emotion, instrument, genre'. Interrupted runs resume from the last checkpoint in --out. "
            "For several GPUs run it under `accelerate launch -m musicmed_stream.cli.main`."
        ),
    )
    parser.add_argument("--jamendo", required=True, metavar="DIR", help="MTG-Jamendo metadata folder")
    parser.add_argument("--audio", required=True, metavar="DIR", help="MTG-Jamendo audio folder (TSV PATHs)")
    parser.add_argument("--model", default="facebook/musicgen-small", help="base model id or folder")
    parser.add_argument("--out", required=True, metavar="DIR", help="adapter output folder")
    parser.add_argument("--split", type=int, default=d.split, help=f"official split N (default {d.split})")
    parser.add_argument("--epochs", type=int, default=d.epochs, help=f"default {d.epochs}")
    parser.add_argument("--lr", type=float, default=d.learning_rate, help=f"default {d.learning_rate}")
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help=f"default {d.batch_size}")
    parser.add_argument("--grad-accum", type=int, default=d.grad_accum, help="gradient accumulation steps")
    parser.add_argument("--crop-seconds", type=float, default=d.crop_seconds, help="random crop length")
    parser.add_argument("--lora-r", type=int, default=d.lora_r, help=f"LoRA rank (default {d.lora_r})")
    parser.add_argument("--lora-alpha", type=int, default=d.lora_alpha, help="LoRA alpha")
    parser.add_argument("--lora-dropout", type=float, default=d.lora_dropout, help="LoRA dropout")
    parser.add_argument("--ffn", action="store_true", help="also adapt the feed-forward layers fc1/fc2")
    parser.add_argument("--text-dropout", type=float, default=d.text_dropout, help="prompt dropout (CFG)")
    parser.add_argument("--warmup-steps", type=int, default=d.warmup_steps, help="linear warm-up steps")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--mixed-precision", choices=PRECISIONS, default=d.mixed_precision)
    parser.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every, metavar="N")
    parser.add_argument("--validate-every", type=int, default=d.validate_every, metavar="N")
    parser.add_argument("--max-steps", type=int, help="stop after N optimizer steps")
    parser.add_argument("--max-tracks", type=int, help="use only the first N tracks of the split")
    parser.add_argument("--mapping", metavar="FILE", help="tag mapping JSON (default: built-in)")
    parser.add_argument("--allow-download", action="store_true", help="fetch a missing model id")
    parser.add_argument("--cpu", action="store_true", help="train on the CPU even if a GPU is present")
    parser.add_argument("--no-resume", action="store_true", help="ignore checkpoints in --out")
    parser.set_defaults(func=run)
