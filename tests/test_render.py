"""Offline render: outputs, resume after interruption, bad input through the CLI."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import mido
import numpy as np
import pyloudnorm
import pytest
import soundfile as sf

from musicmed_stream.chain import ChainConfig, sound_bounds, true_peak_dbtp
from musicmed_stream.cli.main import main
from musicmed_stream.engines.builtin import BuiltinEngine
from musicmed_stream.planner import Plan, PlanSettings, plan_session
from musicmed_stream.render import RenderError, render_session

SETTINGS = PlanSettings(minutes=2.0, clip_seconds=15.0, seed=3)
CEILING = 10 ** (-1.0 / 20.0)


def make_plan() -> Plan:
    return plan_session("sad", "calm", SETTINGS)


def make_engine() -> BuiltinEngine:
    return BuiltinEngine(overlap_fraction=ChainConfig().crossfade_fraction)


class CrashAfter:
    """A real engine that dies after ``clips`` clips, as a killed render would."""

    def __init__(self, engine: BuiltinEngine, clips: int) -> None:
        self.engine, self.clips, self.calls = engine, clips, 0
        self.name, self.sample_rate, self.channels = engine.name, engine.sample_rate, engine.channels

    def generate(self, segment, previous, *, seed, cancel=None):
        if self.calls == self.clips:
            raise RuntimeError("simulated crash")
        self.calls += 1
        return self.engine.generate(segment, previous, seed=seed, cancel=cancel)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """One uninterrupted 2-minute render, shared by the tests below."""
    out = tmp_path_factory.mktemp("reference")
    render_session(make_plan(), make_engine(), out, ChainConfig())
    return out


def test_render_writes_every_output(reference):
    plan = make_plan()
    config = ChainConfig()
    n = len(plan.segments)
    manifest = json.loads((reference / "manifest.json").read_text())
    assert manifest["complete"] is True and len(manifest["clips"]) == n

    clips = [sf.read(reference / "clips" / f"clip_{i:03d}.wav", dtype="float32")[0] for i in range(n)]
    for i, clip in enumerate(clips):
        state = json.loads((reference / "clips" / f"clip_{i:03d}.json").read_text())
        assert state["index"] == i and state["state"] and state["frames"] == clip.shape[0]

    session, rate = sf.read(reference / "session.wav", dtype="float64")
    assert rate == 44100 and session.shape[1] == 2
    # Plan length minus the quarter-clip overlaps, after the silence trim of each prepared clip.
    prepared = [np.subtract(*sound_bounds(c, rate, config.trim_threshold_db)[::-1]) for c in clips]
    overlaps = sum(min(a, b) // 4 for a, b in itertools.pairwise(prepared))
    assert session.shape[0] == sum(prepared) - overlaps
    planned = plan.duration_s  # the played length: the plan counts the crossfade overlaps itself
    assert abs(session.shape[0] / rate - planned) < 0.5

    lsb = 2.0**-23
    assert np.abs(session).max() <= CEILING + lsb
    assert true_peak_dbtp(session) <= -1.0 + 0.01
    loudness = pyloudnorm.Meter(rate).integrated_loudness(session)
    assert abs(loudness - config.target_lufs) < 1.0

    assert Plan.from_json((reference / "plan.json").read_text()) == plan
    midi = mido.MidiFile(reference / "session.mid")
    assert sum(msg.type == "note_on" for track in midi.tracks for msg in track) > 0
    assert (reference / "path.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (reference / "report.md").read_text()
    assert sum(line.startswith(f"| {i} |") for i in range(n) for line in report.splitlines()) == n
    summary = json.loads((reference / "render.json").read_text())
    assert summary["engine"] == "builtin" and summary["realtime_factor"] > 0
    assert set(summary["timings_s"]) >= {"generate", "chain", "write", "total"}


def test_resume_after_deleting_and_truncating_clips_is_identical(reference, tmp_path):
    out = tmp_path / "resumed"
    shutil.copytree(reference, out)
    n = len(make_plan().segments)
    (out / "session.wav").unlink()
    (out / "clips" / f"clip_{n - 1:03d}.wav").unlink()
    truncated = out / "clips" / f"clip_{n - 2:03d}.wav"
    truncated.write_bytes(truncated.read_bytes()[:1000])
    result = render_session(make_plan(), make_engine(), out, ChainConfig())
    assert result.clips_resumed == n - 2 and result.clips_generated == 2
    assert (out / "session.wav").read_bytes() == (reference / "session.wav").read_bytes()
    for i in (n - 2, n - 1):
        # Samples, not bytes: libsndfile stamps float WAVs with the time of writing (PEAK chunk).
        name = f"clips/clip_{i:03d}.wav"
        np.testing.assert_array_equal(sf.read(out / name)[0], sf.read(reference / name)[0])


def test_parallel_chain_and_other_block_size_give_the_same_session(reference, tmp_path):
    # The reference prepares clips on one thread while the engine runs; three threads and another
    # streaming block size must give the very same bytes, whatever the thread timing.
    out = tmp_path / "parallel"
    render_session(make_plan(), make_engine(), out, ChainConfig(), chain_workers=3, block_frames=3000)
    assert (out / "session.wav").read_bytes() == (reference / "session.wav").read_bytes()


def test_resume_after_crash_inside_the_engine_is_identical(reference, tmp_path):
    out = tmp_path / "crashed"
    with pytest.raises(RuntimeError, match="simulated crash"):
        render_session(make_plan(), CrashAfter(make_engine(), clips=3), out, ChainConfig())
    assert not (out / "session.wav").exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] is False and sorted(manifest["clips"]) == ["0", "1", "2"]
    result = render_session(make_plan(), make_engine(), out, ChainConfig())
    assert result.clips_resumed == 3
    assert (out / "session.wav").read_bytes() == (reference / "session.wav").read_bytes()


def test_failed_session_write_leaves_nothing_presented_as_finished(reference, tmp_path, monkeypatch):
    import musicmed_stream.render as render_module

    out = tmp_path / "full"
    shutil.copytree(reference, out)
    (out / "session.wav").unlink()
    real_write = sf.SoundFile.write
    written = []

    def disk_full(self, data):  # the disk fills up once the session file holds a few blocks
        if Path(self.name).name.startswith(".session.wav") and len(written) >= 3:
            raise OSError(28, "No space left on device")
        written.append(len(data))
        return real_write(self, data)

    monkeypatch.setattr(sf.SoundFile, "write", disk_full)
    with pytest.raises(render_module.AudioError, match="No space left"):
        render_session(make_plan(), make_engine(), out, ChainConfig())
    assert not (out / "session.wav").exists()
    assert json.loads((out / "manifest.json").read_text())["complete"] is False
    assert not list(out.glob(".session.wav.*"))


def test_other_arguments_in_the_folder_are_refused_unless_forced(reference, tmp_path):
    out = tmp_path / "other"
    shutil.copytree(reference, out)
    other = plan_session("sad", "happy", SETTINGS)
    with pytest.raises(RenderError, match=r"other arguments.*plan"):
        render_session(other, make_engine(), out, ChainConfig())
    with pytest.raises(RenderError, match=r"other arguments.*chain"):
        render_session(make_plan(), make_engine(), out, ChainConfig(target_lufs=-23.0))
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    with pytest.raises(RenderError, match="not empty"):
        render_session(make_plan(), make_engine(), stranger, ChainConfig())
    assert (stranger / "notes.txt").read_text() == "mine"


def test_cli_render_small_session_with_jamendo_statistics_and_force(tmp_path, capsys, jamendo_dir):
    out = tmp_path / "cli"
    args = ["render", "--from", "anxious", "--to", "relaxed", "--minutes", "0.2", "--clip-seconds", "4"]
    args += ["--jamendo", str(jamendo_dir), "--out", str(out), "--format", "flac", "--quiet"]
    assert main(args) == 0
    info = sf.info(out / "session.flac")
    assert info.samplerate == 44100 and info.channels == 2 and info.duration > 8.0
    statistics = json.loads((out / "plan.json").read_text())["meta"]["statistics"]
    assert Path(statistics).resolve() == jamendo_dir.resolve()
    capsys.readouterr()
    assert main([*args, "--seed", "9"]) == 2
    assert "other arguments" in capsys.readouterr().err
    assert main([*args, "--seed", "9", "--force"]) == 0
    assert json.loads((out / "render.json").read_text())["arguments"]["seed"] == 9


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--from", "sad", "--to", "blorptastic"], "blorptastic"),
        (["--from", "sad", "--to", "calm", "--minutes", "0"], "minutes"),
        (["--from", "sad", "--to", "calm", "--minutes", "0.1", "--clip-seconds", "30"], "clip_seconds"),
    ],
)
def test_cli_bad_input_is_one_line(argv, message, tmp_path, capsys):
    out = tmp_path / "never"
    assert main(["render", *argv, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err
    assert not (out / "session.wav").exists()


def test_cli_unwritable_folder_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    argv = ["render", "--from", "sad", "--to", "calm", "--minutes", "0.1", "--clip-seconds", "3"]
    assert main([*argv, "--out", str(blocker / "sub"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot create output folder" in err and "\n" not in err


def test_cli_session_sample_format_from_the_flag_or_the_config(tmp_path, capsys):
    argv = ["render", "--from", "sad", "--to", "calm", "--minutes", "0.1", "--clip-seconds", "3", "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "default")]) == 0
    assert sf.info(tmp_path / "default" / "session.wav").subtype == "PCM_24"
    assert main([*argv, "--sample-format", "PCM_16", "--out", str(tmp_path / "flag")]) == 0
    assert sf.info(tmp_path / "flag" / "session.wav").subtype == "PCM_16"
    config = tmp_path / "config.toml"
    config.write_text('[render]\nformat = "flac"\nsample_format = "PCM_16"\n[session]\njamendo = ""\n')
    assert main([*argv, "--config", str(config), "--out", str(tmp_path / "config")]) == 0
    assert sf.info(tmp_path / "config" / "session.flac").subtype == "PCM_16"
    config.write_text('[render]\nformat = "flac"\nsample_format = "FLOAT"\n')
    capsys.readouterr()
    assert main([*argv, "--config", str(config), "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip()
    assert "render" in err and "FLOAT is for WAV only" in err and "\n" not in err


def test_cli_chain_config_file_errors_name_the_key(tmp_path, capsys):
    config = tmp_path / "chain.toml"
    config.write_text("[chain]\ntarget_lufs = -23.0\nceiling_dbtpp = -1.0\n")
    argv = ["render", "--from", "sad", "--to", "calm", "--minutes", "0.1", "--clip-seconds", "3"]
    assert main([*argv, "--chain-config", str(config), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "chain.ceiling_dbtpp" in err and "\n" not in err
    assert not (tmp_path / "o").exists()


def test_render_resamples_to_the_requested_session_rate(tmp_path):
    plan = plan_session("sad", "calm", PlanSettings(minutes=0.15, clip_seconds=3.0))
    result = render_session(plan, make_engine(), tmp_path / "r48", ChainConfig(), sample_rate=48000)
    session, rate = sf.read(result.files["session"], dtype="float32")
    assert rate == 48000 and result.sample_rate == 48000
    clip_rate = sf.info(tmp_path / "r48" / "clips" / "clip_000.wav").samplerate
    assert clip_rate == 44100  # clips stay as the engine made them
    assert abs(session.shape[0] / rate - result.duration_s) < 1e-9
    assert abs(result.duration_s - (12.0 - 3 * 0.75)) < 0.1  # four 3-s clips (nearest 9 s), 3 overlaps
