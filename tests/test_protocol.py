"""The protocol models, their JSON Schema file and the documented examples agree with each other."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

from musicmed_stream.control import protocol as p
from musicmed_stream.control import schema
from musicmed_stream.control.events import Event, PlanChanged
from musicmed_stream.emotion import VA, resolve_state

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "protocol.md"


def doc_examples() -> list[dict]:
    blocks = re.findall(r"```json\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.DOTALL)
    return [json.loads(block) for block in blocks]


def test_committed_schema_matches_the_code() -> None:
    committed = (schema.SCHEMA_DIR / schema.schema_filename()).read_text(encoding="utf-8")
    assert committed == schema.render_schema(), "run: python -m musicmed_stream.control.schema"


def test_schema_command_writes_and_checks(tmp_path: Path) -> None:
    assert schema.main(["--check", str(tmp_path)]) == 1  # nothing there yet
    assert schema.main([str(tmp_path)]) == 0
    assert schema.main(["--check", str(tmp_path)]) == 0
    written = json.loads((tmp_path / "control-v1.schema.json").read_text(encoding="utf-8"))
    mapping = written["$defs"]["ClientMessage"]["discriminator"]["mapping"]
    assert sorted(mapping) == sorted(p.COMMAND_TYPES)
    assert sorted(written["$defs"]["ServerMessage"]["discriminator"]["mapping"]) == [
        "error",
        "event",
        "hello",
        "ok",
    ]


def test_documented_examples_are_valid_messages() -> None:
    examples = doc_examples()
    assert len(examples) >= 10
    seen = set()
    for example in examples:
        is_server = example["type"] in ("ok", "error", "event") or "protocol_version" in example
        parse = p.parse_server_message if is_server else p.parse_client_message
        seen.add(type(parse(example)).__name__)
    expected = {"HelloMessage", "OkReply", "ErrorReply", "StartCommand", "SetTargetCommand"}
    expected |= {"SegmentStartedEvent", "PlanChangedEvent", "SessionEndedEvent"}
    assert expected <= seen


def test_documented_examples_validate_against_the_json_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    document = schema.build_schema()
    validator = jsonschema.Draft202012Validator(document)
    for example in doc_examples():
        validator.validate(example)
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({"type": "volume", "volume": 2})
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({"type": "start", "from": "sad"})


def test_every_command_type_has_a_model_and_a_documented_row() -> None:
    doc = DOC.read_text(encoding="utf-8")
    for kind in p.COMMAND_TYPES:
        assert f"`{kind}`" in doc
    for kind in p.EVENT_TYPES:
        assert f"`{kind}`" in doc


@pytest.mark.parametrize(
    "message",
    [
        {"type": "volume", "volume": -0.1},
        {"type": "volume", "volume": float("nan")},
        {"type": "volume"},
        {"type": "start", "from": "sad", "to": "calm", "minutes": 0},
        {"type": "start", "from": "sad", "to": "calm", "clip_seconds": math.inf},
        {"type": "start", "from": "", "to": "calm"},
        {"type": "start", "from": "sad", "to": "calm", "path": "zigzag"},
        {"type": "start", "from": "sad", "to": "calm", "seed": -1},
        {"type": "set_target", "target": {"valence": 0.1}},
        {"type": "set_target", "target": {"valence": 0.1, "arousal": -1.01}},
        {"type": "set_target", "target": "   "},
        {"type": "stop", "fade_seconds": 61},
        {"type": "subscribe", "events": ["not_an_event"]},
        {"type": "status", "unexpected": 1},
        {"type": "status", "id": [1]},
    ],
)
def test_out_of_range_and_malformed_commands_are_rejected(message: dict) -> None:
    with pytest.raises(pydantic.ValidationError):
        p.parse_client_message(message)


unit = st.floats(min_value=-1, max_value=1, allow_nan=False)


@given(valence=unit, arousal=unit)
def test_a_clicked_point_reaches_the_planner_unchanged(valence: float, arousal: float) -> None:
    point = {"valence": valence, "arousal": arousal}
    command = p.parse_client_message({"type": "set_target", "target": point})
    assert isinstance(command, p.SetTargetCommand)
    assert command.target_state() == VA(valence, arousal)  # a point, never text parsed again
    va, _ = resolve_state(command.target_state())
    assert (va.valence, va.arousal) == (valence, arousal)


@given(
    minutes=st.none() | st.floats(min_value=0.01, max_value=240),
    clip=st.none() | st.floats(min_value=0.5, max_value=120),
    seed=st.none() | st.integers(0, 2**31 - 1),
    path=st.none() | st.sampled_from(["line", "arc"]),
    msg_id=st.none() | st.integers(-(2**40), 2**40) | st.text(max_size=8),
)
def test_start_commands_survive_a_json_round_trip(minutes, clip, seed, path, msg_id) -> None:
    fields = {"minutes": minutes, "clip_seconds": clip, "seed": seed, "path": path, "id": msg_id}
    data = {"type": "start", "from": "sad", "to": "0.3,-0.7"}
    data |= {k: v for k, v in fields.items() if v is not None}
    command = p.parse_client_message(data)
    assert p.parse_client_message(json.loads(p.dump(command))) == command
    assert json.loads(p.dump(command)) == data


def test_event_messages_carry_daemon_events() -> None:
    event = Event(PlanChanged(from_index=3, plan={}, reason="target"), time=12.5)
    message = p.event_message(event)
    assert json.loads(p.dump(message)) == {
        "type": "event",
        "event": "plan_changed",
        "data": {"from_index": 3, "plan": {}, "reason": "target"},
        "time": 12.5,
    }
    assert p.parse_server_message(json.loads(p.dump(message))) == message


def test_the_schema_describes_each_events_data() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(schema.build_schema())
    good = {
        "type": "event",
        "event": "bridge",
        "data": {"index": 2, "seconds": 6.0, "reason": "late"},
        "time": 1.0,
    }
    validator.validate(good)
    for bad_data in (
        {"index": "2", "seconds": 6.0, "reason": "late"},
        {"index": 2},
        {**good["data"], "x": 1},
    ):
        with pytest.raises(jsonschema.ValidationError):
            validator.validate({**good, "data": bad_data})
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({**good, "event": "nonsense"})


@pytest.mark.parametrize(
    "message",
    [
        {"type": "volume", "volume": True},
        {"type": "volume", "volume": "0.5"},
        {"type": "start", "from": "sad", "to": "calm", "temperature": "1"},
        {"type": "start", "from": "sad", "to": "calm", "clip_seconds": "1"},
        {"type": "start", "from": "sad", "to": "calm", "seed": 1.0},
        {"type": "start", "from": "sad", "to": "calm", "seed": -0.0},
        {"type": "set_target", "target": {"valence": "0.1", "arousal": 0}},
        {"type": "status", "id": True},
        {"type": "status", "id": 1e309},
        {"type": "status", "id": 2**60},
    ],
)
def test_validation_is_as_strict_as_the_schema(message: dict) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    with pytest.raises(pydantic.ValidationError):
        p.parse_client_message(message)
    # JSON Schema counts 1.0 as an integer: there the model is stricter than the schema can say
    if not any(isinstance(v, float) and (not math.isfinite(v) or v.is_integer()) for v in message.values()):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.Draft202012Validator(schema.build_schema()).validate(message)
