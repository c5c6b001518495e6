"""Test helper: a tiny, randomly initialized CLAP model saved like a user's downloaded model.

Nothing is downloaded: the RoBERTa-style byte-level BPE tokenizer is trained offline with
``tokenizers`` on a few sentences, the model is ``ClapModel`` with tiny text and audio configs,
and ``ClapProcessor`` pairs the tokenizer with a ``ClapFeatureExtractor``. The folder it writes
is loaded by the evaluation code through the same ``from_pretrained(..., local_files_only=True)``
path as ``laion/larger_clap_music``.
"""

from __future__ import annotations

import json
from pathlib import Path

CORPUS = [
    "calm, relaxed, piano, ambient",
    "sad, melancholic, strings, classical",
    "happy, energetic, guitar, pop",
    "dark, tense, synthesizer, electronic",
    "the sound of music with soft pads and a slow tempo",
]


def _tokenizer(folder: Path):
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaTokenizer

    bpe = ByteLevelBPETokenizer()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    bpe.train_from_iterator(CORPUS * 4, vocab_size=400, min_frequency=1, special_tokens=specials)
    bpe.save_model(str(folder))
    vocab = json.loads((folder / "vocab.json").read_text())
    merges = [
        tuple(line.split())
        for line in (folder / "merges.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    return RobertaTokenizer(vocab=vocab, merges=merges), len(vocab)


def make_tiny_clap(folder: Path, seed: int = 0) -> Path:
    """Write a tiny random CLAP model + processor into ``folder`` and return it."""
    import torch
    from transformers import (
        ClapAudioConfig,
        ClapConfig,
        ClapFeatureExtractor,
        ClapModel,
        ClapProcessor,
        ClapTextConfig,
    )

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer, vocab_size = _tokenizer(folder)
    text = ClapTextConfig(
        vocab_size=vocab_size,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=80,
    )
    audio = ClapAudioConfig(
        patch_embeds_hidden_size=8,
        depths=[1, 1],
        num_attention_heads=[1, 1],
        hidden_size=16,
        num_hidden_layers=2,
    )
    config = ClapConfig(text_config=text.to_dict(), audio_config=audio.to_dict(), projection_dim=8)
    torch.manual_seed(seed)
    model = ClapModel(config).eval()
    model.save_pretrained(folder)
    extractor = ClapFeatureExtractor(truncation="rand_trunc", padding="repeatpad")
    ClapProcessor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(folder)
    return folder
