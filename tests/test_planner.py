"""Iso-principle planner: paths, phases, orchestration, re-planning and serialization."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from musicmed_stream.chain import ChainConfig
from musicmed_stream.emotion import load_tag_mapping, nearest_emotion, resolve_state
from musicmed_stream.errors import ConfigError, UnknownEmotionError
from musicmed_stream.planner import VA, Plan, PlanSettings, TagStatistics, clip_grid, plan_session, replan
from musicmed_stream.player.deck import Deck, Label, OfflineOutput

coordinate = st.floats(-1.0, 1.0, allow_nan=False)
points = st.builds(VA, coordinate, coordinate)
shapes = st.sampled_from(["line", "arc"])


def _minutes(clips: int, clip: float = 30.0, fraction: float = 0.25) -> float:
    """Minutes that ``clips`` whole clips play for when each pair overlaps by ``fraction`` of a clip."""
    return (clips * clip - (clips - 1) * fraction * clip) / 60


def _distances(plan: Plan, target: VA) -> list[float]:
    return [math.dist((s.valence, s.arousal), (target.valence, target.arousal)) for s in plan.segments]


def _assert_monotone(distances: list[float]) -> None:
    for before, after in itertools.pairwise(distances):
        assert after <= before + 1e-9


@settings(max_examples=80, deadline=None)
@given(points, points, shapes, st.integers(3, 24))
def test_path_starts_and_ends_at_the_states_and_never_moves_away(start, target, shape, clips):
    plan = plan_session(start, target, PlanSettings(minutes=_minutes(clips), path=shape))
    assert len(plan.segments) == clips
    assert plan.segments[0].va == start
    assert plan.segments[-1].va == target
    _assert_monotone(_distances(plan, target))
    for s in plan.segments:
        assert -1.0 <= s.valence <= 1.0 and -1.0 <= s.arousal <= 1.0


@settings(max_examples=40, deadline=None)
@given(points, points, st.integers(0, 4), st.integers(0, 4))
def test_match_and_settle_phases(start, target, match, settle):
    settings = PlanSettings(minutes=_minutes(10), match_clips=match, settle_clips=settle)
    plan = plan_session(start, target, settings)
    vas = [s.va for s in plan.segments]
    assert vas[:match] == [start] * match
    assert vas[len(vas) - settle :] == [target] * settle
    if math.dist((start.valence, start.arousal), (target.valence, target.arousal)) > 1e-6:
        # Only the phases sit still: every transition clip is strictly between the states.
        transition = vas[match : len(vas) - settle]
        assert len(transition) == 10 - match - settle
        assert all(p not in (start, target) for p in transition)


def test_line_steps_evenly_between_the_phases():
    settings = PlanSettings(minutes=_minutes(6), match_clips=1, settle_clips=1)
    plan = plan_session(VA(-0.5, 0.5), VA(0.5, -0.5), settings)
    # 6 clips: 1 match, 4 transition at k/5, 1 settle.
    expected = [-0.5, -0.3, -0.1, 0.1, 0.3, 0.5]
    assert [s.valence for s in plan.segments] == pytest.approx(expected)
    assert [s.arousal for s in plan.segments] == pytest.approx([-v for v in expected])


def test_arc_keeps_away_from_the_neutral_centre_where_the_line_crosses_it():
    start, target = VA(-0.8, -0.1), VA(0.8, 0.1)
    line = plan_session(start, target, PlanSettings(minutes=5, path="line"))
    arc = plan_session(start, target, PlanSettings(minutes=5, path="arc", arc_min_radius=0.6))
    assert min(math.hypot(s.valence, s.arousal) for s in line.segments) < 0.2
    assert min(math.hypot(s.valence, s.arousal) for s in arc.segments) >= 0.6 - 1e-9
    # Opposite states: the arc goes round through the calm (low arousal) side.
    assert min(s.arousal for s in arc.segments) < -0.5


polar = st.tuples(st.floats(0.5, 1.0), st.floats(-math.pi, math.pi)).map(
    lambda rt: VA(rt[0] * math.cos(rt[1]), rt[0] * math.sin(rt[1]))
)


@settings(max_examples=60, deadline=None)
@given(polar, polar)
def test_arc_between_intense_states_keeps_their_intensity(start, target):
    # Radius interpolation: between two states outside the minimum radius (0.5) the arc never comes
    # closer to the neutral centre than the less intense of them, whatever the turn.
    plan = plan_session(start, target, PlanSettings(minutes=6, path="arc"))
    floor = min(math.hypot(start.valence, start.arousal), math.hypot(target.valence, target.arousal))
    assert min(math.hypot(s.valence, s.arousal) for s in plan.segments) >= floor - 1e-9


def _steps(plan: Plan) -> np.ndarray:
    points = np.array([[s.valence, s.arousal] for s in plan.segments])
    return np.hypot(*np.diff(points, axis=0).T)


def test_arc_from_near_the_centre_heads_out_along_the_targets_bearing():
    start, target = VA(0.05, 0.1), VA(-0.8, -0.4)
    phases = {"minutes": 4, "match_clips": 1, "settle_clips": 1}
    arc = plan_session(start, target, PlanSettings(path="arc", **phases))
    line = plan_session(start, target, PlanSettings(path="line", **phases))
    bearing = math.atan2(target.arousal, target.valence)
    # Once it leaves the start, the arc heads out along the target's bearing...
    for s in arc.segments[1:]:
        turn = math.remainder(math.atan2(s.arousal, s.valence) - bearing, math.tau)
        assert abs(turn) < math.radians(15)
    # ...further from the neutral centre than the line, which passes right by it...
    closest = lambda plan: min(math.hypot(s.valence, s.arousal) for s in plan.segments[1:])  # noqa: E731
    assert closest(arc) > closest(line) + 0.1
    # ...and without a jump away from the start: no step is three times the line's even step.
    assert _steps(arc).max() < 3 * _steps(line).max()
    # Both states inside the minimum radius: nothing to go around, the arc is the line.
    near = (VA(0.1, 0.2), VA(-0.2, -0.1))
    line = plan_session(*near, PlanSettings(minutes=3, path="line"))
    assert [s.va for s in plan_session(*near, PlanSettings(minutes=3, path="arc")).segments] == [
        s.va for s in line.segments
    ]


@settings(max_examples=80, deadline=None)
@given(points, points)
def test_arc_moves_step_by_step_even_from_inside_the_minimum_radius(start, target):
    # A 15-minute session (40 clips): no clip-to-clip step on the arc is a jump across the circle.
    assert _steps(plan_session(start, target, PlanSettings(path="arc"))).max() < 0.2


def test_short_sessions_keep_a_transition_clip():
    plan = plan_session(
        "sad", "happy", PlanSettings(minutes=_minutes(3))
    )  # 3 clips, phases of 2 + 2 do not fit
    sad, happy = resolve_state("sad")[0], resolve_state("happy")[0]
    assert [s.va for s in plan.segments][::2] == [sad, happy]
    assert plan.segments[1].va not in (sad, happy)


def _crossfaded(durations: list[float], fraction: float, rate: int = 1000) -> tuple[list[float], float]:
    """Clip starts and total length (s) of clips of ``durations`` joined by the player's deck itself."""
    chain = ChainConfig(crossfade_fraction=fraction, highpass=False, limiter=False)
    deck = Deck(rate, 1, chain, block_size=rate)
    deck.begin()
    starts = [
        deck.append(np.ones((round(d * rate), 1), np.float32), Label("clip", n))
        for n, d in enumerate(durations)
    ]
    deck.finish(0.0)
    audio = np.concatenate(list(OfflineOutput(deck, rate).rest()))
    return [f / rate for f in starts], audio.shape[0] / rate


def test_clip_grid_counts_the_crossfade_overlaps():
    # Default: 40 clips of 30 s every 22.5 s play 7.5 + 40 * 22.5 = 907.5 s; 39 would play 885 s.
    grid = clip_grid(PlanSettings(minutes=15))
    assert grid == [(i * 22.5, 30.0) for i in range(40)]
    # Without crossfades, clips are laid end to end; a clip is never cut short.
    assert clip_grid(PlanSettings(minutes=15, crossfade_fraction=0.0)) == [
        (i * 30.0, 30.0) for i in range(30)
    ]
    assert clip_grid(PlanSettings(minutes=1, clip_seconds=24, crossfade_fraction=0.0)) == [
        (0.0, 24.0),
        (24.0, 24.0),
        (48.0, 24.0),
    ]
    assert clip_grid(PlanSettings(minutes=1, clip_seconds=60)) == [(0.0, 60.0)]


@pytest.mark.parametrize("fraction", [0.0, 0.25, 0.5])
def test_plan_times_are_the_times_the_audio_chain_plays(fraction):
    plan = plan_session("sad", "calm", PlanSettings(minutes=3, clip_seconds=8, crossfade_fraction=fraction))
    starts, total = _crossfaded([s.duration_s for s in plan.segments], fraction)
    assert [s.start_s for s in plan.segments] == pytest.approx(starts, abs=1e-3)
    assert plan.duration_s == pytest.approx(total, abs=1e-3)


@settings(max_examples=60, deadline=None)
@given(st.floats(0.1, 60), st.sampled_from([4.0, 7.5, 10.0, 30.0]), st.floats(0.0, 0.5), shapes)
def test_played_session_is_within_half_a_clip_step_of_the_minutes(minutes, clip, fraction, shape):
    if clip > minutes * 60:
        clip = minutes * 60
    settings = PlanSettings(minutes=minutes, clip_seconds=clip, crossfade_fraction=fraction, path=shape)
    plan = plan_session("sad", "calm", settings)
    step = clip * (1 - fraction)
    assert abs(plan.duration_s - minutes * 60) <= step / 2 + 1e-6
    # Whole clips, one step apart, the last one ending with the played session.
    assert {s.duration_s for s in plan.segments} == {clip}
    last = plan.segments[-1]
    assert last.start_s + last.duration_s == pytest.approx(plan.duration_s)
    assert [s.start_s for s in plan.segments] == pytest.approx([i * step for i in range(len(plan.segments))])


def test_old_plan_files_without_a_crossfade_fraction_still_load():
    data = plan_session("sad", "calm", PlanSettings(minutes=2)).to_dict()
    del data["settings"]["crossfade_fraction"]
    assert Plan.from_dict(data).settings.crossfade_fraction == PlanSettings().crossfade_fraction


def test_segments_name_their_nearest_emotion_and_mood_tag():
    mapping = load_tag_mapping()
    plan = plan_session("angry", "peaceful", PlanSettings(minutes=4, path="arc"))
    for s in plan.segments:
        assert s.emotion == nearest_emotion(s.va).name
        assert mapping.get(s.mood).kind == "mood"
        assert s.prompt == f"{s.mood}, {s.emotion}, {s.instrument}, {s.genre}"
    assert plan.start_label == "angry" and plan.target_label == "peaceful"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"minutes": 0}, "minutes"),
        ({"minutes": -3}, "minutes"),
        ({"minutes": float("nan")}, "minutes"),
        ({"clip_seconds": 0}, "clip_seconds"),
        ({"minutes": 0.25, "clip_seconds": 30}, "longer than the session"),
        ({"crossfade_fraction": 0.6}, "crossfade_fraction"),
        ({"crossfade_fraction": -0.1}, "crossfade_fraction"),
        ({"temperature": -0.1}, "temperature"),
        ({"path": "spiral"}, "path"),
        ({"match_clips": -1}, "match_clips"),
        ({"seed": 1.5}, "seed"),
        ({"arc_min_radius": 1.5}, "arc_min_radius"),
    ],
)
def test_bad_settings_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        plan_session("sad", "calm", PlanSettings(**kwargs))


def test_bad_states_are_refused():
    with pytest.raises(UnknownEmotionError):
        plan_session("sadd", "calm")
    with pytest.raises(UnknownEmotionError):
        plan_session(VA(1.2, 0.0), "calm")


# --- orchestration -------------------------------------------------------------------------------

# Two moods whose top instruments differ, so the mode changes with the mood.
STATS = TagStatistics(
    instruments={
        "sad": {"piano": 50, "cello": 30, "violin": 20, "voice": 500},
        "happy": {"guitar": 60, "piano": 30, "drums": 10},
        "calm": {"harp": 98, "flute": 2},
    },
    genres={
        "sad": {"classical": 70, "ambient": 30},
        "happy": {"pop": 80, "rock": 20},
        "calm": {"ambient": 1},
    },
    source="test",
)


def test_temperature_zero_takes_the_mode_and_never_changes():
    plan = plan_session("sad", "happy", PlanSettings(minutes=10, temperature=0, seed=3), STATS)
    assert {s.instrument for s in plan.segments} == {"piano"}  # the mode of sad without 'voice'
    assert {s.genre for s in plan.segments} == {"classical"}
    assert plan.segments[-1].mood == "happy"


def test_high_temperature_changes_instruments_and_genres():
    plan = plan_session("sad", "sad", PlanSettings(minutes=10, temperature=3, seed=1), STATS)
    instruments = [s.instrument for s in plan.segments]
    changes = sum(a != b for a, b in itertools.pairwise(instruments))
    assert changes >= 10  # change probability 1 - e^-3 = 0.95 over 19 steps
    assert set(instruments) <= {"piano", "cello", "violin"}  # voice is skipped
    assert len({s.genre for s in plan.segments}) == 2


def test_a_plausible_instrument_is_kept_across_a_mood_change_and_an_implausible_one_is_not():
    # piano has 30% of happy's tags: kept; calm has no piano: changed.
    kept = plan_session("sad", "happy", PlanSettings(minutes=_minutes(4), temperature=1e-6, seed=0), STATS)
    assert [s.instrument for s in kept.segments] == ["piano"] * 4
    moved = plan_session("sad", "calm", PlanSettings(minutes=_minutes(4), temperature=1e-6, seed=0), STATS)
    assert moved.segments[0].instrument == "piano" and moved.segments[-1].instrument == "harp"


def test_same_seed_same_plan_and_the_seed_matters():
    s = PlanSettings(minutes=8, temperature=2.0, seed=11)
    a = plan_session("tense", "serene", s, STATS)
    assert plan_session("tense", "serene", s, STATS) == a
    others = [
        plan_session("tense", "serene", PlanSettings(minutes=8, temperature=2.0, seed=k), STATS)
        for k in range(5)
    ]
    assert any(o.segments != a.segments for o in others)


# --- re-planning ----------------------------------------------------------------------------------


def _xy(va: VA) -> tuple[float, float]:
    return va.valence, va.arousal


@settings(max_examples=50, deadline=None)
@given(points, points, shapes, st.integers(0, 17))
def test_replan_keeps_the_past_and_goes_from_the_listener_to_the_new_target(position, target, shape, index):
    plan = plan_session("sad", "calm", PlanSettings(minutes=_minutes(20), path=shape, seed=4))
    new = replan(plan, index, position, target)
    assert new.segments[:index] == plan.segments[:index]
    assert [(s.index, s.start_s, s.duration_s) for s in new.segments] == [
        (s.index, s.start_s, s.duration_s) for s in plan.segments
    ]
    assert new.segments[-1].va == target
    if index <= 16:  # 4 clips or more left: room for the whole settle phase
        assert new.segments[-2].va == target
    if index + 3 < len(plan.segments) and position != target:
        # the listener was met already: the first re-planned clip takes the first step (no second
        # match phase), a step of at most half the way (no jump)
        first = new.segments[index].va
        assert first != position
        assert math.dist(_xy(first), _xy(position)) <= 0.5 * math.dist(_xy(position), _xy(target)) + 0.2
        held = replan(plan, index, position, target, match_clips=1)  # a match phase when asked
        assert held.segments[index].va == position
    _assert_monotone(_distances(Plan(position, target, new.settings, new.segments[index:]), target))
    assert new.target == target
    assert new.meta["replans"][-1]["from_index"] == index
    assert plan.meta["replans"] == []  # the original plan is untouched


def test_replan_continues_the_instrument_of_the_last_kept_clip():
    plan = plan_session("sad", "sad", PlanSettings(minutes=5, temperature=0), STATS)
    new = replan(plan, 4, plan.segments[4].va, "happy", STATS)
    assert {s.instrument for s in new.segments} == {"piano"}  # T = 0: nothing changes
    assert new.target_label == "happy"
    assert replan(plan, 4, plan.segments[4].va, "happy", STATS) == new  # deterministic


def test_replan_rejects_bad_indices():
    plan = plan_session("sad", "calm", PlanSettings(minutes=_minutes(4)))
    for index in (-1, 4, 10):
        with pytest.raises(ConfigError, match="from_index"):
            replan(plan, index, VA(0, 0), "calm")


# --- serialization ---------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    points,
    points,
    shapes,
    st.floats(0.5, 6),
    st.sampled_from([7.5, 10.0, 30.0]),
    st.floats(0, 4),
    st.integers(0, 2**31),
)
def test_plans_round_trip_through_json(start, target, shape, minutes, clip, temperature, seed):
    plan = plan_session(
        start,
        target,
        PlanSettings(minutes=minutes, clip_seconds=clip, path=shape, temperature=temperature, seed=seed),
    )
    plan = replan(plan, len(plan.segments) // 2, plan.segments[-1].va, "happy")
    back = Plan.from_json(plan.to_json())
    assert back == plan
    assert back.meta == plan.meta
    assert [s.prompt for s in back.segments] == [s.prompt for s in plan.segments]


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(st.sampled_from("abcdef"), st.integers(1, 10_000), min_size=1),
    st.floats(0, 1e6, allow_subnormal=True),
)
def test_tempered_probabilities_are_a_distribution_for_any_temperature(counts, temperature):
    from musicmed_stream.planner.orchestration import tempered_probabilities

    p = tempered_probabilities(counts, temperature)
    assert p.sum() == pytest.approx(1.0) and (p >= 0).all()
    assert p[list(counts).index(max(counts, key=counts.get))] == p.max()


def test_tempered_probabilities_follow_p_to_the_one_over_t():
    from musicmed_stream.planner.orchestration import tempered_probabilities

    counts = {"a": 1, "b": 2, "c": 1}
    # T = 0.5 squares the shares (1/4, 1/2, 1/4) -> (1/16, 4/16, 1/16) -> (1/6, 4/6, 1/6).
    assert tempered_probabilities(counts, 0.5) == pytest.approx([1 / 6, 4 / 6, 1 / 6])
    assert tempered_probabilities(counts, 1.0) == pytest.approx([0.25, 0.5, 0.25])
    assert tempered_probabilities(counts, 0.0).tolist() == [0.0, 1.0, 0.0]


@pytest.mark.parametrize(
    ("start", "target"),
    [("anxious", "relaxed"), ("sad", "happy"), ("angry", "calm"), ("depressed", "excited")],
)
def test_arc_keeps_away_from_the_centre_between_opposite_states(start, target):
    """The straight line crosses the neutral centre; the arc goes around it, visibly."""
    arc = plan_session(start, target, PlanSettings(minutes=15, path="arc")).segments
    line = plan_session(start, target, PlanSettings(minutes=15, path="line")).segments
    radius = [math.hypot(s.valence, s.arousal) for s in arc]
    assert min(radius) >= 0.45
    assert min(math.hypot(s.valence, s.arousal) for s in line) < 0.2
    gap = max(
        math.dist((a.valence, a.arousal), (b.valence, b.arousal)) for a, b in zip(arc, line, strict=True)
    )
    assert gap > 0.5  # not the same path drawn twice


@pytest.mark.parametrize(
    ("start", "target"),
    [
        # anxious -> relaxed and sad -> happy as the norms' (x - 5) / 4 placed them: anxious inside
        # the minimum radius, the line through the centre; the arc used to follow it (radius 0.03).
        (VA(-0.30, 0.30), VA(0.5625, -0.6275)),
        (VA(-0.725, -0.3775), VA(0.8675, 0.2625)),
        (VA(0.3, 0.0), VA(-0.7, 0.0)),  # exactly through the centre
        (VA(-0.6, -0.5), VA(0.3, 0.1)),  # the inner state is the target
    ],
)
def test_arc_from_inside_the_minimum_radius_goes_round_the_centre(start, target):
    arc = plan_session(start, target, PlanSettings(minutes=15, path="arc")).segments
    line = plan_session(start, target, PlanSettings(minutes=15, path="line")).segments
    inner = min(math.hypot(start.valence, start.arousal), math.hypot(target.valence, target.arousal))
    assert min(math.hypot(s.valence, s.arousal) for s in line) < 0.1
    assert min(math.hypot(s.valence, s.arousal) for s in arc) >= inner - 1e-9
    gap = max(
        math.dist((a.valence, a.arousal), (b.valence, b.arousal)) for a, b in zip(arc, line, strict=True)
    )
    assert gap > 0.3


@settings(max_examples=80, deadline=None)
@given(points, points, st.integers(3, 40))
def test_arc_never_comes_nearer_the_centre_than_its_nearer_state(start, target, clips):
    # Up to the minimum radius (0.5): the arc keeps the inner state's radius, or 0.5 when both are
    # outside; only when both are inside is it the straight line.
    r0, r1 = math.hypot(start.valence, start.arousal), math.hypot(target.valence, target.arousal)
    plan = plan_session(start, target, PlanSettings(minutes=_minutes(clips), path="arc"))
    if max(r0, r1) >= 0.5:
        floor = min(r0, r1, 0.5)
        assert min(math.hypot(s.valence, s.arousal) for s in plan.segments) >= floor - 1e-9
