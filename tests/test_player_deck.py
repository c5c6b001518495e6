"""The playback deck, stepped frame by frame: no threads, no sleeps, no clock.

Everything the daemon's feeder does goes through these commands and reports; the offline render
drives the same deck, so these tests hold for both."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from musicmed_stream.chain import ChainConfig, equal_power_gains, true_peak_dbtp
from musicmed_stream.player.deck import Bridged, BridgePolicy, Deck, Ended, Heard, Label, OfflineOutput

SR = 1000
PLAIN = ChainConfig(trim_silence=False, normalize=False, denoise=False, highpass=False, limiter=False)


def flat(frames: int, value: float, channels: int = 1) -> np.ndarray:
    return np.full((frames, channels), value, dtype=np.float32)


def noise(frames: int, seed: int, amp: float = 0.3, channels: int = 2) -> np.ndarray:
    return (amp * np.random.default_rng(seed).standard_normal((frames, channels))).astype(np.float32)


def step(deck: Deck, frames: int, block: int = 64) -> np.ndarray:
    """Render ``frames`` through the deck as a sink would pull them."""
    out = []
    while frames > 0:
        buf = np.empty((min(block, frames), deck.channels), np.float32)
        deck.render(buf)
        out.append(buf)
        frames -= buf.shape[0]
    return np.concatenate(out)


def play_offline(clips: list[np.ndarray], config: ChainConfig, block: int, fade_s: float = 0.0) -> np.ndarray:
    deck = Deck(SR, clips[0].shape[1], config, block_size=block)
    deck.begin()
    output = OfflineOutput(deck, block, fade_s)
    blocks: list[np.ndarray] = []
    for n, clip in enumerate(clips):
        deck.append(clip, Label("clip", n))
        if n == len(clips) - 1:
            deck.finish(fade_s)
        blocks += output.ready()
    blocks += output.rest()
    return np.concatenate(blocks)


@settings(max_examples=40, deadline=None)
@given(len_a=st.integers(4, 3000), len_b=st.integers(4, 3000))
def test_clips_crossfade_over_a_quarter_of_the_shorter_one(len_a: int, len_b: int) -> None:
    out = play_offline([flat(len_a, 1.0), flat(len_b, 2.0)], PLAIN, block=97)[:, 0]
    overlap = min(len_a, len_b) // 4
    start_b = len_a - overlap
    assert out.shape[0] == len_a + len_b - overlap
    fade_out, fade_in = (g[:, 0] for g in equal_power_gains(overlap))
    np.testing.assert_allclose(out[start_b:len_a], fade_out * 1.0 + fade_in * 2.0, rtol=1e-6)
    assert np.all(out[:start_b] == 1.0) and np.all(out[len_a:] == 2.0)


def test_a_crossfade_of_uncorrelated_noise_keeps_its_level() -> None:
    out = play_offline([noise(4000, 3, 0.1, 1), noise(4000, 4, 0.1, 1)], PLAIN, block=128)[:, 0]
    window = 50
    rms = np.sqrt(np.mean(out[: out.size // window * window].reshape(-1, window) ** 2, axis=1))
    assert np.all(np.abs(20 * np.log10(rms / 0.1)) < 2.5)  # 50 frames of noise: a loose bound
    assert abs(20 * np.log10(np.sqrt(np.mean(out[2700:3300] ** 2)) / 0.1)) < 0.6  # across the fade


@settings(max_examples=25, deadline=None)
@given(
    lengths=st.lists(st.integers(40, 3000), min_size=1, max_size=5),
    block=st.integers(16, 2000),
    fade=st.floats(0.0, 0.5),
)
def test_the_output_does_not_depend_on_the_block_size(lengths: list[int], block: int, fade: float) -> None:
    clips = [noise(n, seed) for seed, n in enumerate(lengths)]
    config = ChainConfig(trim_silence=False, normalize=False, denoise=False)
    reference = play_offline(clips, config, block=4096, fade_s=fade)
    np.testing.assert_array_equal(play_offline(clips, config, block=block, fade_s=fade), reference)


def test_live_playback_through_the_ring_is_the_offline_render_sample_for_sample() -> None:
    sr = 44100
    clips = [noise(2 * sr, seed, amp=0.6) for seed in range(3)]  # loud: the limiter works
    config = ChainConfig(trim_silence=False, normalize=False, denoise=False)
    deck = Deck(sr, 2, config, block_size=4096)
    deck.begin()
    offline, output = [], OfflineOutput(deck, 4096, 0.5)
    for n, clip in enumerate(clips):
        deck.append(clip, Label("clip", n))
        if n == 2:
            deck.finish(0.5)
        offline += output.ready()
    offline += output.rest()
    offline_audio = np.concatenate(offline)

    live = Deck(sr, 2, config, block_size=512, ring_seconds=0.05)
    live.begin()
    for n, clip in enumerate(clips):
        live.append(clip, Label("clip", n))
    live.finish(0.5)
    played, end, heard = [], None, []
    while end is None or live.ring.frames_read < end:
        live.fill()
        buf = np.empty((live.ring.available(), 2), np.float32)
        live.ring.read_into(buf)
        played.append(buf)
        for report in live.reports(live.ring.frames_read):
            if isinstance(report, Ended):
                end = report.frame
            elif isinstance(report, Heard):
                heard.append((report.label.index, report.frame))
    live_audio = np.concatenate(played)[live.latency : end]
    np.testing.assert_array_equal(live_audio, offline_audio)
    assert true_peak_dbtp(live_audio) <= -1.0
    step_frames = 2 * sr - 2 * sr // 4
    assert heard == [(n, n * step_frames + live.latency) for n in range(3)]
    assert end == 3 * step_frames + 2 * sr // 4 + live.latency


def test_a_voice_is_reported_when_the_sink_reaches_it_not_when_it_is_rendered() -> None:
    deck = Deck(SR, 1, PLAIN, block_size=50)
    deck.begin()
    deck.append(flat(300, 0.5), Label("clip", 0))
    deck.append(flat(300, 0.5), Label("clip", 1))
    step(deck, 400)
    reports = deck.reports(read=200)
    assert [r.label.index for r in reports if isinstance(r, Heard)] == [0]
    assert deck.heard() is not None and deck.heard().index == 0
    later = deck.reports(read=400)
    assert [(r.label.index, r.frame) for r in later if isinstance(r, Heard)] == [(1, 225)]
    assert deck.heard().index == 1


def test_cut_in_fades_out_what_plays_and_drops_what_had_not_started() -> None:
    deck = Deck(SR, 1, PLAIN, block_size=50)
    deck.begin()
    deck.append(flat(1000, 1.0), Label("clip", 0))
    deck.append(flat(1000, 5.0), Label("clip", 1))  # starts at 750
    step(deck, 300)
    dropped = deck.cut_in(flat(1000, 2.0), Label("clip", 9), fade_s=0.1)
    assert [label.index for label in dropped] == [1]
    out = step(deck, 1000)[:, 0]
    fade_out, fade_in = (g[:, 0] for g in equal_power_gains(100))
    np.testing.assert_allclose(out[:100], fade_out + 2.0 * fade_in, rtol=1e-6)
    np.testing.assert_allclose(out[100:], 2.0)


def test_skip_brings_the_next_clip_in_now_with_what_follows_it() -> None:
    deck = Deck(SR, 1, PLAIN, block_size=50)
    deck.begin()
    for n, value in enumerate((1.0, 2.0, 3.0)):
        deck.append(flat(800, value), Label("clip", n))
    step(deck, 100)
    assert deck.skip(fade_s=0.05)
    out = step(deck, 1500)[:, 0]
    np.testing.assert_allclose(out[60:540], 2.0)  # clip 1 at once, then ...
    np.testing.assert_allclose(out[800:1400], 3.0)  # ... clip 2 after its usual crossfade, to its end
    assert not out[1400:].any()
    assert not Deck(SR, 1, PLAIN).skip(0.05), "nothing scheduled: nothing to skip to"


def test_pause_fades_to_silence_holds_the_place_and_resume_fades_back() -> None:
    deck = Deck(SR, 1, PLAIN, block_size=10, pause_ramp_s=0.02)
    deck.begin()
    deck.append(np.arange(1000, dtype=np.float32)[:, None] / 1000, Label("clip", 0))
    step(deck, 100, block=10)
    assert deck.pause() and not deck.pause()
    fading = step(deck, 20, block=10)[:, 0]
    assert np.all(np.diff(fading) <= 0.001) and fading[-1] == 0.0
    before = deck.played_frames()
    silent = step(deck, 500, block=10)
    assert not silent.any() and deck.played_frames() == before, "the place is kept while paused"
    assert deck.resume()
    back = step(deck, 40, block=10)[:, 0]
    assert back[0] < back[-1] and back[-1] == pytest.approx(0.16, abs=0.02)  # where it paused


def test_volume_ramps_without_a_step() -> None:
    deck = Deck(SR, 1, PLAIN, block_size=10, volume=1.0, volume_ramp_s=0.1)
    deck.begin()
    deck.append(flat(1000, 1.0), Label("clip", 0))
    step(deck, 50)
    deck.set_volume(0.5)
    out = step(deck, 100, block=10)[:, 0]
    assert np.max(np.abs(np.diff(out))) <= 1.0 / 100 + 1e-6  # a full change takes 100 frames
    assert out[-1] == pytest.approx(0.5) and deck.volume == 0.5


def test_fade_out_ends_the_program_after_the_fade() -> None:
    deck = Deck(SR, 1, PLAIN, block_size=10)
    deck.begin()
    deck.append(flat(5000, 1.0), Label("clip", 0))
    step(deck, 100)
    deck.fade_out(0.2)
    out = step(deck, 400)[:, 0]
    ends = [r for r in deck.reports() if isinstance(r, Ended)]
    assert len(ends) == 1 and ends[0].frame == 300
    assert np.all(np.diff(out[:200]) <= 0) and not out[200:].any()
    assert not deck.active


def test_late_audio_is_bridged_by_a_loop_of_the_last_clip() -> None:
    deck = Deck(SR, 1, PLAIN, block_size=10, bridge=BridgePolicy(seconds=0.2, fade_s=0.05))
    deck.begin()
    deck.append(np.linspace(0, 1, 500, dtype=np.float32)[:, None], Label("clip", 3))
    out = step(deck, 900, block=10)[:, 0]
    bridges = [r for r in deck.reports() if isinstance(r, Bridged)]
    assert bridges and bridges[0].index == 3 and bridges[0].seconds == pytest.approx(0.2)
    assert out[400:].min() > 0.5, "no gap: the end of the clip plays again"


def test_without_a_bridge_policy_the_music_just_ends() -> None:
    deck = Deck(SR, 1, PLAIN, block_size=10)
    deck.begin()
    deck.append(flat(200, 1.0), Label("clip", 0))
    out = step(deck, 400)[:, 0]
    assert out[:200].all() and not out[200:].any()
    assert not [r for r in deck.reports() if isinstance(r, Bridged)]


def test_a_clip_in_pieces_crossfades_into_the_next_over_its_full_length() -> None:
    deck = Deck(SR, 1, PLAIN, block_size=10)
    deck.begin()
    deck.append(flat(100, 1.0), Label("clip", 0), frames=400)  # the first piece of a 400-frame clip
    for _ in range(3):
        deck.append(flat(100, 1.0), Label("piece", 0))
    deck.append(flat(400, 2.0), Label("clip", 1))
    out = step(deck, 700)[:, 0]
    fade_out, fade_in = (g[:, 0] for g in equal_power_gains(100))
    np.testing.assert_allclose(out[300:400], fade_out + 2.0 * fade_in, rtol=1e-6)
    assert np.all(out[:300] == 1.0) and np.all(out[400:700] == 2.0)


def test_begin_forgets_the_last_program_for_identical_output() -> None:
    clip = noise(3000, 5, amp=0.9)
    config = ChainConfig(trim_silence=False, normalize=False, denoise=False)
    deck = Deck(SR, 2, config, block_size=64)
    outputs = []
    for _ in range(2):
        deck.begin()
        deck.append(clip, Label("clip", 0))
        outputs.append(step(deck, 2000))
    np.testing.assert_array_equal(outputs[0], outputs[1])
    assert deck.played_frames() == 2000  # the new program only


def live(deck: Deck, frames: int) -> np.ndarray:
    """Play ``frames`` through the deck's ring as the feeder and a sound card would, block by block."""
    out = []
    while frames > 0:
        deck.fill()
        block = np.zeros((deck.block_size, deck.channels), np.float32)
        deck.ring.read_into(block)
        out.append(block)
        frames -= deck.block_size
    return np.concatenate(out)


def test_taking_back_queued_audio_renders_it_again_exactly() -> None:
    """A command that changes nothing (the volume it already has) takes back the ring and renders it
    again: the listener hears exactly what they would have, sample for sample, limiter included."""
    config = ChainConfig(trim_silence=False, normalize=False, denoise=False)
    clips = [noise(30000, seed, amp=0.8) for seed in range(3)]

    def play(command_at: list[int]) -> np.ndarray:
        deck = Deck(SR * 44, 2, config, block_size=256, ring_seconds=0.5, respond_s=0.01)
        deck.begin()
        for n, clip in enumerate(clips):
            deck.append(clip, Label("clip", n))
        out = []
        for at in [*command_at, 80000]:
            out.append(live(deck, at - sum(x.shape[0] for x in out)))
            deck.set_volume(1.0)
        return np.concatenate(out)[:80000]

    np.testing.assert_array_equal(play([5000, 27000, 41000]), play([]))


def test_a_command_is_heard_within_respond_s_not_after_the_whole_ring() -> None:
    rate, block = 10000, 100
    deck = Deck(rate, 1, PLAIN, block_size=block, ring_seconds=1.0, respond_s=0.05)
    deck.begin()
    deck.append(flat(50000, 1.0), Label("clip", 0))
    heard = live(deck, 3000)[:, 0]
    assert deck.ring.available() >= 9000, "a second of processed audio is queued"
    deck.cut_in(flat(50000, 2.0), Label("clip", 1), fade_s=0.01)
    after = live(deck, 2000)[:, 0]
    reached = int(np.argmax(after >= 2.0 - 1e-6))
    assert after[0] == 1.0 and 0.05 * rate <= reached <= 0.05 * rate + 2 * block + 100
    heard_reports = [r for r in deck.reports(deck.ring.frames_read) if isinstance(r, Heard)]
    assert [r.label.index for r in heard_reports] == [0, 1]
    assert heard_reports[1].frame == pytest.approx(3000 + reached - 100, abs=block)  # where it begins
    assert not heard[heard != 1.0].any()


def test_a_command_after_finish_does_not_undo_it() -> None:
    """Commands take back the queued audio from before :meth:`Deck.finish`: the program must still
    end (the soak found sessions that looped their last clip's end forever after a volume change)."""
    rate, block = 10000, 100
    deck = Deck(
        rate, 1, PLAIN, block_size=block, ring_seconds=1.0, respond_s=0.05, bridge=BridgePolicy(0.5, 0.05)
    )
    deck.begin()
    deck.append(flat(30000, 1.0), Label("clip", 0))
    live(deck, 3000)
    deck.finish(0.1)
    deck.set_volume(0.5)
    live(deck, 40000)
    reports = deck.reports(deck.ring.frames_read)
    assert [r for r in reports if isinstance(r, Ended)], "the program ended"
    assert not [r for r in reports if isinstance(r, Bridged)] and not deck.active


def test_a_command_right_after_begin_does_not_bring_back_the_idle_deck() -> None:
    """The ring holds silence queued before :meth:`Deck.begin`; a command that takes it back must
    not restore the idle deck (the whole program would render as silence and never end)."""
    rate, block = 10000, 100
    deck = Deck(rate, 1, PLAIN, block_size=block, ring_seconds=1.0, respond_s=0.05)
    live(deck, 3000)  # idle: silence queued
    deck.begin()
    deck.append(flat(20000, 1.0), Label("clip", 0))
    deck.set_volume(1.0)
    deck.finish(0.0)
    out = live(deck, 30000)[:, 0]
    assert np.count_nonzero(out) == pytest.approx(20000, abs=2 * block), "the clip is heard"
    assert [r for r in deck.reports(deck.ring.frames_read) if isinstance(r, Ended)]


def test_the_clip_at_command_is_where_a_cut_in_lands_not_the_render_position() -> None:
    rate, block = 10000, 100
    deck = Deck(rate, 1, PLAIN, block_size=block, ring_seconds=1.0, respond_s=0.05)
    deck.begin()
    deck.append(flat(2000, 1.0), Label("clip", 0))
    deck.append(flat(20000, 2.0), Label("clip", 1))  # from 1500 on (a quarter of the shorter clip)
    live(deck, 800)
    assert deck.playing("clip").index == 1, "rendered into the ring already"
    assert deck.clip_at_command().index == 0, "a command now lands at 1300, before clip 1"
    dropped = deck.cut_in(flat(5000, 3.0), Label("clip", 1), fade_s=0.01)
    assert [label.index for label in dropped] == [1], "which is why the cut-in drops clip 1"
    live(deck, 2000)
    assert deck.clip_at_command().index == 1  # the cut-in clip, heard by now


def test_a_program_counts_from_what_is_heard_after_begin_not_from_the_queued_silence() -> None:
    rate, block = 10000, 100
    deck = Deck(rate, 1, PLAIN, block_size=block, ring_seconds=1.0, respond_s=0.05)
    live(deck, 3000)  # idle: a second of silence queued
    deck.begin()
    live(deck, 500)  # the first clip takes a while to come
    deck.append(flat(20000, 1.0), Label("clip", 0))
    out = live(deck, 3000)[:, 0]
    (heard,) = [r for r in deck.reports(deck.ring.frames_read) if isinstance(r, Heard)]
    assert heard.position <= 500 + 2 * block, "the program's clock: what played since begin()"
    assert out[: 2 * block].all(), "the queued silence was dropped: the clip plays at once"
