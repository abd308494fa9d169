"""Single-flight: concurrent callers that need the same thing share one task doing it.

The one rule behind "identical requests share one PVS call", used by the answer cache,
the 2025 device read and the login. A caller that gives up (its client hung up) does
not cancel the others' shared task; its outcome is retrieved even when nobody awaits it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Hashable
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


class SingleFlight(Generic[K, T]):
    """At most one task in flight per key."""

    def __init__(self) -> None:
        self._tasks: dict[K, asyncio.Task[T]] = {}

    def task(self, key: K, start: Callable[[], Coroutine[Any, Any, T]]) -> asyncio.Task[T]:
        """The task in flight for `key`, started with `start()` when there is none."""
        task = self._tasks.get(key)
        if task is None:
            task = asyncio.create_task(start(), name=f"single-flight {key}")
            self._tasks[key] = task
            task.add_done_callback(lambda done: self._done(key, done))
        return task

    async def run(self, key: K, start: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Await the shared task for `key`; cancelling this caller leaves it running."""
        return await asyncio.shield(self.task(key, start))

    def __contains__(self, key: K) -> bool:
        return key in self._tasks

    def __len__(self) -> int:
        return len(self._tasks)

    async def cancel_all(self) -> None:
        """Cancel every task in flight and wait for them to end."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _done(self, key: K, task: asyncio.Task[T]) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]
        if not task.cancelled():
            task.exception()  # retrieved here so a task nobody awaits logs nothing
