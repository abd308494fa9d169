"""The floor for the benchmark: a bare aiohttp handler serving fixed bytes, nothing else."""

from __future__ import annotations

import sys
from pathlib import Path

from aiohttp import web


def main() -> None:
    """Serve the file given as argv[2] on 127.0.0.1:argv[1] for any GET."""
    port, body_path = int(sys.argv[1]), Path(sys.argv[2])
    body = body_path.read_bytes()

    async def handler(_request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/cgi-bin/dl_cgi", handler)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()
