"""The process's open-files limit: each client connection is a file descriptor.

systemd's default soft limit (1024) is below what server.max_connections allows, and a
process out of descriptors can accept nobody at all, so the soft limit is raised as far
as the hard one lets (the unit sets LimitNOFILE=); the connection cap is then held
below whatever the limit is (bridge.web.connections).
"""

from __future__ import annotations

import logging
import resource

log = logging.getLogger(__name__)


def raise_open_files_limit(wanted: int) -> int:
    """Raise the soft RLIMIT_NOFILE towards `wanted` (never above the hard limit, never
    lower); the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (OSError, ValueError) as error:
            log.warning("cannot raise the open-files limit to %d: %s", target, error)
    return soft
