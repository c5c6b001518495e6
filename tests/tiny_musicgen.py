"""Build a tiny random-weight MusicGen checkpoint for tests (no download).

The model has the real architecture (T5 text encoder, 32-kHz EnCodec with 4 codebooks, MusicGen
decoder whose pad/bos id equals its vocabulary size) at toy widths, and a tiny word-level Unigram
tokenizer built with ``tokenizers`` and wrapped as the ``T5Tokenizer`` the processor expects. It is
saved with ``save_pretrained`` so tests load it through the same code path as a user's checkpoint.
"""

from __future__ import annotations

from pathlib import Path

TINY_CODEBOOK_SIZE = 64
# 4 codebooks x 50 frames/s x 6 bits = 1.2 kbit/s.
TINY_BANDWIDTH = 1.2

WORDS = (
    "happy",
    "sad",
    "calm",
    "relaxing",
    "energetic",
    "dark",
    "epic",
    "romantic",
    "melancholic",
    "peaceful",
    "tense",
    "angry",
    "excited",
    "fear",
    "joy",
    "sadness",
    "anger",
    "calmness",
    "tension",
    "serenity",
    "piano",
    "guitar",
    "strings",
    "synthesizer",
    "drums",
    "bass",
    "voice",
    "ambient",
    "classical",
    "pop",
    "rock",
    "electronic",
    "soundtrack",
    "jazz",
    "folk",
    "background",
    "film",
    "dream",
    "love",
    "nature",
    "meditative",
    "uplifting",
    "slow",
    "fast",
    "soft",
    "loud",
)


def build_tiny_tokenizer():
    """A Unigram tokenizer over a few dozen words, wrapped as ``T5Tokenizer``."""
    from tokenizers import Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import Unigram
    from transformers import T5Tokenizer

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0), (",", -3.0)]
    vocab += [(f"▁{w}", -5.0) for w in WORDS]
    backend = Tokenizer(Unigram(vocab, unk_id=2, byte_fallback=False))
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Punctuation(),
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True),
        ]
    )
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    backend.post_processor = processors.TemplateProcessing(
        single=["$A", "</s>"], special_tokens=[("</s>", 1)]
    )
    return T5Tokenizer(tokenizer_object=backend, vocab=vocab, extra_ids=0)


def build_tiny_model(seed: int = 0):
    """Random-weight ``MusicgenForConditionalGeneration`` at toy widths (float32, CPU)."""
    import torch
    from transformers import (
        EncodecConfig,
        MusicgenConfig,
        MusicgenDecoderConfig,
        MusicgenForConditionalGeneration,
        T5Config,
    )

    torch.manual_seed(seed)
    text = T5Config(
        vocab_size=5 + len(WORDS),
        d_model=16,
        d_kv=8,
        d_ff=32,
        num_layers=1,
        num_heads=2,
        relative_attention_num_buckets=8,
    )
    audio = EncodecConfig(
        sampling_rate=32000,
        target_bandwidths=[TINY_BANDWIDTH],
        codebook_size=TINY_CODEBOOK_SIZE,
        upsampling_ratios=[8, 5, 4, 4],
        hidden_size=16,
        num_filters=4,
        num_lstm_layers=1,
        use_causal_conv=False,
        use_conv_shortcut=False,
        normalize=False,
        chunk_length_s=None,
    )
    decoder = MusicgenDecoderConfig(
        vocab_size=TINY_CODEBOOK_SIZE,
        pad_token_id=TINY_CODEBOOK_SIZE,
        bos_token_id=TINY_CODEBOOK_SIZE,
        decoder_start_token_id=TINY_CODEBOOK_SIZE,
        hidden_size=32,
        ffn_dim=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_codebooks=4,
        max_position_embeddings=2048,
        dropout=0.0,
    )
    config = MusicgenConfig(text_encoder=text, audio_encoder=audio, decoder=decoder)
    model = MusicgenForConditionalGeneration(config).eval()
    # EnCodec's codebooks start as zeros (k-means fills them in training): give them random
    # vectors so that different codes decode to different audio.
    with torch.no_grad():
        for layer in model.audio_encoder.quantizer.layers:
            layer.codebook.embed.normal_(0.0, 1.0)
            layer.codebook.embed_avg.copy_(layer.codebook.embed)
    gen = model.generation_config
    gen.decoder_start_token_id = TINY_CODEBOOK_SIZE
    gen.pad_token_id = TINY_CODEBOOK_SIZE
    gen.bos_token_id = TINY_CODEBOOK_SIZE
    gen.do_sample = True
    gen.guidance_scale = 3.0
    gen.max_length = 1500
    return model


def save_tiny_musicgen(folder: str | Path, seed: int = 0) -> Path:
    """Save the tiny model and its processor to ``folder`` as a user's checkpoint would be."""
    from transformers import EncodecFeatureExtractor, MusicgenProcessor

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = build_tiny_model(seed)
    features = EncodecFeatureExtractor(feature_size=1, sampling_rate=32000, padding_value=0.0)
    processor = MusicgenProcessor(feature_extractor=features, tokenizer=build_tiny_tokenizer())
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def one_torch_thread():
    """Generator for a fixture: the toy model's tiny ops run fastest on one thread (and the
    test machine is shared); the previous setting is restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
