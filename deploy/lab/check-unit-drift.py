"""Fail when the bridge role's unit template drifts from deploy/pvs-bridge.service.

The template, rendered with the role's defaults, must equal the reference unit line for
line (each file's two header comment lines aside). Run with the project's .venv python
(it has jinja2 and PyYAML through ansible-core).
"""

from __future__ import annotations

import difflib
import re
import sys
from pathlib import Path

import jinja2
import yaml

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "deploy" / "pvs-bridge.service"
ROLE = ROOT / "ansible" / "roles" / "bridge"
HEADER_LINES = 2


def role_defaults(env: jinja2.Environment) -> dict[str, object]:
    """The role's defaults with their own {{ }} references resolved."""
    raw = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    values: dict[str, object] = {}
    for _ in range(5):  # defaults refer to each other a few levels deep at most
        for name, value in raw.items():
            if isinstance(value, str) and "{{" in value and "lookup(" not in value:
                try:
                    values[name] = env.from_string(value).render(values)
                except jinja2.UndefinedError:
                    continue
            else:
                values[name] = value
    return values


def main() -> int:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["regex_replace"] = lambda value, pattern, repl="": re.sub(pattern, repl, value)
    env.filters["comment"] = lambda value: "#\n# " + value + "\n#"
    template = (ROLE / "templates" / "pvs-bridge.service.j2").read_text()
    rendered = env.from_string(template).render(ansible_managed="managed", **role_defaults(env))
    got = rendered.splitlines()[HEADER_LINES + 2 :]  # the comment filter adds two lines
    want = REFERENCE.read_text().splitlines()[HEADER_LINES:]
    if got != want:
        sys.stdout.writelines(
            line + "\n"
            for line in difflib.unified_diff(
                want, got, str(REFERENCE.relative_to(ROOT)), "bridge role template (defaults)"
            )
        )
        print("unit drift: the role's template and deploy/pvs-bridge.service differ")
        return 1
    print("unit drift: none (role template == deploy/pvs-bridge.service)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
