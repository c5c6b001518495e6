"""LoRA fine-tuning of MusicGen on the MTG-Jamendo mood/theme subset (``musicmed-stream finetune``).

torch, transformers, peft and accelerate are imported only when a run starts.
"""

from musicmed_stream.finetune.data import (
    Example,
    SkipCounts,
    Track,
    format_prompt,
    label_statistics,
    prompt_parts,
    read_split,
)
from musicmed_stream.finetune.train import FinetuneConfig, FinetuneResult, finetune

__all__ = [
    "Example",
    "FinetuneConfig",
    "FinetuneResult",
    "SkipCounts",
    "Track",
    "finetune",
    "format_prompt",
    "label_statistics",
    "prompt_parts",
    "read_split",
]
