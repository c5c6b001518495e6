"""LoRA fine-tuning on synthetic audio described by MTG-Jamendo-format TSVs (tiny model, CPU)."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("torch")
pytest.importorskip("peft")
pytest.importorskip("accelerate")

import torch
from tiny_musicgen import one_torch_thread

from musicmed_stream.cli.main import main as cli_main
from musicmed_stream.emotion import load_tag_mapping
from musicmed_stream.engines.musicgen import MusicgenEngine, load_adapter_info
from musicmed_stream.errors import ConfigError
from musicmed_stream.finetune import FinetuneConfig, finetune, format_prompt, prompt_parts, read_split
from musicmed_stream.planner.types import Segment

HEADER = ["TRACK_ID", "ARTIST_ID", "ALBUM_ID", "PATH", "DURATION", "TAGS"]
TRACKS = [  # id, path, mood/theme tags
    ("track_0000001", "01/1.wav", ["mood/theme---calm"]),
    ("track_0000002", "02/2.wav", ["mood/theme---happy", "mood/theme---film"]),
    ("track_0000003", "03/3.wav", ["mood/theme---sad"]),  # missing file
    ("track_0000004", "04/4.wav", ["mood/theme---sad"]),  # corrupt file
    ("track_0000005", "05/5.wav", ["mood/theme---christmas"]),  # theme only: no emotion
]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    yield from one_torch_thread()


@pytest.fixture(scope="module")
def tiny_dir(tiny_musicgen_dir):
    return tiny_musicgen_dir


def write_tsv(path: Path, rows: list[tuple[str, str, list[str]]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        out = csv.writer(handle, delimiter="\t", lineterminator="\n")
        out.writerow(HEADER)
        for track, rel, tags in rows:
            out.writerow([track, "artist_1", "album_1", rel, "2.0", *tags])


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("jamendo")
    meta, audio = root / "meta", root / "audio"
    write_tsv(meta / "splits" / "split-0" / "autotagging_moodtheme-train.tsv", TRACKS)
    write_tsv(meta / "autotagging_moodtheme.tsv", TRACKS)
    write_tsv(
        meta / "autotagging_instrument.tsv",
        [
            ("track_0000001", "01/1.wav", ["instrument---piano"]),
            ("track_0000002", "02/2.wav", ["instrument---synth"]),
        ],
    )
    write_tsv(meta / "autotagging_genre.tsv", [("track_0000001", "01/1.wav", ["genre---ambient"])])
    (meta / "tag_map.json").write_text(json.dumps({"instrument": {"synth": "synthesizer"}}))
    rate = 22050  # not the model's rate: the crops are resampled
    t = np.arange(2 * rate) / rate
    for rel, signal in (
        ("01/1.wav", 0.4 * np.sin(2 * np.pi * 220 * t)),
        ("02/2.wav", 0.2 * np.random.default_rng(0).standard_normal(t.size)),
        ("05/5.wav", 0.3 * np.sin(2 * np.pi * 440 * t)),
    ):
        (audio / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(audio / rel, signal.astype(np.float32), rate)
    (audio / "04").mkdir(parents=True)
    (audio / "04" / "4.wav").write_bytes(b"RIFF\x00\x00not a wave file")
    return meta, audio


def config(dataset, tiny_dir, out: Path, **overrides) -> FinetuneConfig:
    meta, audio = dataset
    options = {
        "epochs": 30,
        "learning_rate": 1e-2,
        "batch_size": 2,
        "crop_seconds": 1.0,
        "lora_r": 8,
        "lora_dropout": 0.0,
        "text_dropout": 0.0,
        "checkpoint_every": 0,
        "cpu": True,
    }
    return FinetuneConfig(jamendo=meta, audio=audio, model=str(tiny_dir), out=out, **(options | overrides))


def test_split_tracks_join_instrument_and_genre_tags(dataset):
    tracks = {t.track_id: t for t in read_split(dataset[0], 0, "train")}
    assert set(tracks) == {row[0] for row in TRACKS}
    assert tracks["track_0000001"].moods == ("calm",)
    assert tracks["track_0000001"].instruments == ("piano",) and tracks["track_0000001"].genres == (
        "ambient",
    )
    assert tracks["track_0000002"].instruments == ("synthesizer",), "tag_map.json clean-up applied"


def test_prompts_are_built_like_generation_prompts(dataset):
    import random

    mapping = load_tag_mapping()
    track = next(t for t in read_split(dataset[0]) if t.track_id == "track_0000001")
    mood, emotion, instrument, genre = prompt_parts(track, mapping, random.Random(0))
    assert (mood, instrument, genre) == ("calm", "piano", "ambient")
    assert emotion == mapping.get("calm").emotion.name
    segment = Segment(0, 0.0, 30.0, 0.0, 0.0, emotion, mood, instrument, genre)
    assert format_prompt(mood, emotion, instrument, genre) == segment.prompt
    theme_only = next(t for t in read_split(dataset[0]) if t.track_id == "track_0000005")
    assert prompt_parts(theme_only, mapping, random.Random(0)) is None


def test_official_split_is_read_whole(jamendo_dir):
    path = jamendo_dir / "splits" / "split-0" / "autotagging_moodtheme-validation.tsv"
    expected = sum(1 for line in path.read_text().splitlines()[1:] if line.strip())
    tracks = read_split(jamendo_dir, 0, "validation")
    assert len(tracks) == expected
    assert all(t.moods for t in tracks)


def test_finetune_overfits_and_the_saved_adapter_reloads_identically(dataset, tiny_dir, tmp_path):
    from musicmed_stream.engines.musicgen.loading import load_musicgen
    from musicmed_stream.finetune.data import encode_examples
    from musicmed_stream.finetune.train import dataset_loss

    cfg = config(dataset, tiny_dir, tmp_path / "adapter")
    result = finetune(cfg)
    assert result.examples == 2
    assert result.skipped == {"no_mood": 1, "missing_audio": 1, "unreadable_audio": 1, "too_short": 0}
    assert result.final_loss < result.initial_loss - 0.3, (result.initial_loss, result.final_loss)
    with (tmp_path / "adapter" / "train_log.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == result.steps == 30
    assert any((tmp_path / "adapter" / "tensorboard").iterdir())

    info = load_adapter_info(tmp_path / "adapter")
    assert info.base_model == str(tiny_dir)
    assert set(info.label_stats["tracks"]) == {"calm", "happy"}
    assert info.tag_mapping["tags"]["calm"] == {"kind": "mood", "emotion": "calm"}

    # Reloaded from disk (base + adapter), the model gives the loss the trained model had.
    loaded = load_musicgen(str(tiny_dir), tmp_path / "adapter", device="cpu", merge_adapter=False)
    examples, _ = encode_examples(
        read_split(cfg.jamendo),
        cfg.audio,
        load_tag_mapping(),
        encode=None,
        sample_rate=32000,
        cache_dir=tmp_path / "adapter" / "code_cache",
        model_id=cfg.model,
        seconds=cfg.crop_seconds,
    )
    reloaded = dataset_loss(loaded.model, loaded.processor.tokenizer, examples, cfg.batch_size, "cpu")
    assert reloaded == pytest.approx(result.final_loss, rel=1e-5)

    base = MusicgenEngine(str(tiny_dir), device="cpu", decode_impl="static")
    tuned = MusicgenEngine(
        str(tiny_dir), adapter=str(tmp_path / "adapter"), device="cpu", decode_impl="static"
    )
    segment = Segment(0, 0.0, 0.3, 0.4, -0.6, "calm", "calm", "piano", "ambient")
    a, b = tuned.generate(segment, None, seed=1), tuned.generate(segment, None, seed=1)
    assert np.array_equal(a.audio, b.audio)
    assert not np.array_equal(a.audio, base.generate(segment, None, seed=1).audio)
    assert tuned.tag_mapping["tags"]["happy"]["emotion"] == load_tag_mapping().get("happy").emotion.name
    assert tuned.adapter_info.statistics().instrument_counts("calm") == {"piano": 1}
    assert tuned.adapter_info.mapping().get("calm").emotion == load_tag_mapping().get("calm").emotion


def test_interrupted_run_resumes_to_the_same_adapter(dataset, tiny_dir, tmp_path):
    from safetensors.torch import load_file

    straight = finetune(config(dataset, tiny_dir, tmp_path / "a", epochs=3, checkpoint_every=2))

    def interrupt(row):
        if row["step"] == 3:
            raise KeyboardInterrupt

    resumable = config(dataset, tiny_dir, tmp_path / "b", epochs=3, checkpoint_every=2)
    with pytest.raises(KeyboardInterrupt):
        finetune(resumable, on_step=interrupt)
    assert not (tmp_path / "b" / "adapter_model.safetensors").exists()
    resumed = finetune(resumable)
    assert resumed.resumed_from == 2 and resumed.steps == straight.steps == 3
    a = load_file(tmp_path / "a" / "adapter_model.safetensors")
    b = load_file(tmp_path / "b" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_no_usable_audio_is_a_one_line_error(dataset, tiny_dir, tmp_path, capsys):
    empty = tmp_path / "no-audio"
    empty.mkdir()
    with pytest.raises(ConfigError, match="no usable training audio"):
        finetune(dataclasses.replace(config(dataset, tiny_dir, tmp_path / "x", max_steps=1), audio=empty))


def test_cli_reports_bad_input_in_one_line(dataset, tiny_dir, tmp_path, capsys):
    args = ["finetune", "--jamendo", str(dataset[0]), "--model", str(tiny_dir)]
    code = cli_main([*args, "--audio", str(tmp_path / "nowhere"), "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--audio" in err
    code = cli_main([*args, "--audio", str(dataset[1]), "--out", str(tmp_path / "o"), "--split", "7"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "split-7" in err


def test_validation_pass_scores_one_clip_per_mood_tag(tiny_dir):
    pytest.importorskip("librosa")
    from transformers import AutoProcessor, MusicgenForConditionalGeneration

    from musicmed_stream.finetune.train import validation_pass

    net = MusicgenForConditionalGeneration.from_pretrained(tiny_dir)
    processor = AutoProcessor.from_pretrained(tiny_dir)
    tags = ("calm", "happy", "christmas")  # a theme tag has no emotion and is left out
    scores = validation_pass(net, processor, load_tag_mapping(), {}, tags, seconds=0.5, seed=0)
    assert set(scores["va"]) == {"calm", "happy"}
    assert 0.0 <= scores["auprc"] <= 1.0 and 0.0 <= scores["hamming"] <= 1.0
    assert all(-1 <= v <= 1 for point in scores["va"].values() for v in point)
