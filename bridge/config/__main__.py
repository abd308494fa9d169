"""`python -m bridge.config FILE`: check a config file with the bridge's own loader.

The provisioning runs this on the controller, from the checkout, before it changes
anything on the Pi: every problem is printed (one line each) and the exit status is 2,
as `pvs-bridge serve` would stop with; a good file prints "config ok" and exits 0.
Only the file is checked: PVS_BRIDGE_* variables of the machine running the check are
ignored, since they are not the Pi's.
"""

from __future__ import annotations

import sys
from pathlib import Path

from bridge.config.errors import ConfigError
from bridge.config.loader import load

USAGE = "usage: python -m bridge.config FILE"


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0].startswith("-"):
        print(USAGE, file=sys.stderr)
        return 2
    try:
        load(Path(argv[0]), environ={})
    except ConfigError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        return 2
    print("config ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
