"""The code stays in small pieces: no module of the bridge over 250 lines, no function over 50.

The simulator is a test instrument, not the product, and is exempt from the module
bound (its functions still count).
"""

from __future__ import annotations

import ast
from pathlib import Path

BRIDGE = Path(__file__).resolve().parent.parent / "bridge"
MAX_MODULE_LINES = 250
MAX_FUNCTION_LINES = 50


def modules() -> list[Path]:
    return sorted(BRIDGE.rglob("*.py"))


def test_no_module_outside_the_simulator_is_over_250_lines() -> None:
    too_long = {
        str(path.relative_to(BRIDGE)): lines
        for path in modules()
        if "simulator" not in path.parts
        and (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert too_long == {}


def test_no_function_is_over_50_lines() -> None:
    too_long: dict[str, int] = {}
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long[f"{path.relative_to(BRIDGE)}:{node.name}"] = length
    assert too_long == {}
