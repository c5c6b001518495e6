"""One helper for turning the project's values into plain JSON values."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any


def to_jsonable(value: Any) -> Any:
    """``value`` as plain JSON types, recursively: numpy scalars and arrays as numbers and lists,
    dataclasses and pydantic models as objects, tuples as lists, paths as text, NaN and infinity
    as ``None`` (JSON has neither); anything else unknown as its text."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str | int | bool) or value is None:
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_jsonable({f.name: getattr(value, f.name) for f in dataclasses.fields(value)})
    if hasattr(value, "model_dump"):  # a pydantic model
        return to_jsonable(value.model_dump())
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return to_jsonable(value.tolist())
    if isinstance(value, Path):
        return str(value)
    return str(value)


def normalized(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists, and so on)."""
    import json

    return json.loads(json.dumps(to_jsonable(value)))


__all__ = ["normalized", "to_jsonable"]
