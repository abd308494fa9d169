"""Print JSON exactly as the PVS's cJSON_Print() does: tabs, `:\\t`, `[{`, `}, {`.

The layout matters: at least one client strips lines that do not start with `{`, a tab
or `}`, so a stand-in that printed JSON differently could break it.
"""

from __future__ import annotations

import json
import math
from typing import Any


def dumps(value: Any) -> str:
    """The cJSON formatted print of `value` followed by the newline the PVS sends."""
    return _value(value, 0) + "\n"


def _value(value: Any, depth: int) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        return _object(value, depth + 1)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(item, depth + 1) for item in value) + "]"
    raise TypeError(f"cannot print {type(value).__name__} as JSON")


def _object(value: dict[str, Any], depth: int) -> str:
    indent = "\t" * depth
    items = [
        f"{indent}{json.dumps(key, ensure_ascii=False)}:\t{_value(item, depth)}"
        for key, item in value.items()
    ]
    return "{\n" + ",\n".join(items) + ("\n" if items else "") + "\t" * (depth - 1) + "}"


def _number(value: float) -> str:
    if math.isnan(value) or math.isinf(value):
        return "null"
    if value.is_integer() and abs(value) < 2**31:
        return str(int(value))
    text = f"{value:1.15g}"
    return text if float(text) == value else f"{value:1.17g}"
