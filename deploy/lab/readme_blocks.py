"""The README's deploy commands, as the lab runs them.

The README marks each block of commands the lab runs verbatim with an HTML comment on
the line before its fence, e.g.

    <!-- lab: laptop -->
    ```sh
    make deploy
    ```

Usage:
  readme_blocks.py README NAME [PI_ADDRESS]   print block NAME (PI_ADDRESS substituted)
  readme_blocks.py README                     check that every block the lab needs is there
Exits 1 with the reason when a marker is missing, repeated, not followed by a fenced
block, or its block is empty: the README cannot drift from what the lab proves.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

# The blocks the lab runs: the laptop path, the on-Pi path and each one's undo.
NEEDED = ("laptop", "on-pi", "undo-laptop", "undo-on-pi")
PLACEHOLDER = "PI_ADDRESS"

MARKER = re.compile(r"^\s*<!--\s*lab:\s*([a-z0-9-]+)\s*-->\s*$")
FENCE = re.compile(r"^(\s*)(```+|~~~+)\s*([A-Za-z0-9_+-]*)\s*$")


class BlockError(ValueError):
    """The README lacks a block the lab needs, or has it in a shape the lab cannot run."""


def blocks(text: str) -> dict[str, str]:
    """Every marked block of TEXT by name: the lines between its fences (fence indent removed)."""
    lines = text.splitlines()
    found: dict[str, str] = {}
    for number, line in enumerate(lines):
        match = MARKER.match(line)
        if not match:
            continue
        name = match.group(1)
        if name in found:
            raise BlockError(f"marker 'lab: {name}' appears twice (line {number + 1})")
        found[name] = _fenced_after(lines, number, name)
    return found


def _fenced_after(lines: list[str], marker: int, name: str) -> str:
    """The fenced block starting on the first non-blank line after the marker."""
    start = marker + 1
    while start < len(lines) and not lines[start].strip():
        start += 1
    opening = FENCE.match(lines[start]) if start < len(lines) else None
    if not opening:
        raise BlockError(
            f"marker 'lab: {name}' (line {marker + 1}) is not followed by a fenced block"
        )
    indent, fence = opening.group(1), opening.group(2)
    body: list[str] = []
    for line in lines[start + 1 :]:
        if line.strip() == fence:
            text = "\n".join(body).strip("\n")
            if not text.strip():
                raise BlockError(f"block 'lab: {name}' (line {marker + 1}) is empty")
            return text + "\n"
        body.append(line[len(indent) :] if line.startswith(indent) else line)
    raise BlockError(f"block 'lab: {name}' (line {marker + 1}) has no closing fence")


def needed(text: str) -> dict[str, str]:
    """The blocks the lab runs; BlockError names the first one missing."""
    found = blocks(text)
    for name in NEEDED:
        if name not in found:
            raise BlockError(f"the README has no block marked <!-- lab: {name} -->")
    return {name: found[name] for name in NEEDED}


def main(argv: list[str]) -> int:
    if not argv or len(argv) > 3:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        found = needed(Path(argv[0]).read_text(encoding="utf-8"))
    except (BlockError, OSError) as problem:
        print(f"readme_blocks: {problem}", file=sys.stderr)
        return 1
    if len(argv) == 1:
        print(f"readme_blocks: {', '.join(found)} present")
        return 0
    name = argv[1]
    if name not in found:
        print(f"readme_blocks: the lab runs no block named {name!r}", file=sys.stderr)
        return 1
    block = found[name]
    sys.stdout.write(block.replace(PLACEHOLDER, argv[2]) if len(argv) == 3 else block)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
