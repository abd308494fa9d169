"""`python -m bridge` runs the same command line as `pvs-bridge`."""

from bridge.cli import main

raise SystemExit(main())
