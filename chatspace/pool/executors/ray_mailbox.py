"""One mailbox per Ray run: every worker's tasks and messages pass through a single actor on the driver's node.

A pair of `ray.util.queue.Queue`s per worker cost two more Ray processes per worker (and per replacement),
each a fresh interpreter, and the driver asked every worker's queue in turn, every 20 ms. The mailbox is
one process for the whole run, and the driver takes all that is waiting in one call, which waits until
something arrives. This module imports nothing heavy: it is what the mailbox's own process loads.
"""

from __future__ import annotations

import asyncio
import collections
import queue
from typing import Any

#: A worker's queue of tasks and messages, under the key of one actor (rank, restart count): a lost
#: actor's key is dropped with whatever it left, and its replacement starts with a fresh one.
Key = tuple[int, int]


class Mailbox:
    """The Ray actor (async: a worker waiting for a task and the driver waiting for messages do not block
    each other). Tasks wait per key (at most `task_slots`); messages wait in one line, in arrival order,
    at most `message_slots` per key (a worker's send then waits until the driver has taken some)."""

    def __init__(self, task_slots: int, message_slots: int):
        self._task_slots = task_slots
        self._message_slots = message_slots
        self._tasks: dict[Key, asyncio.Queue] = {}
        self._messages: collections.deque[tuple[Key, Any]] = collections.deque()
        self._waiting: collections.Counter[Key] = collections.Counter()  # messages not yet taken, per key
        self._dropped: set[Key] = set()
        self._changed: asyncio.Condition | None = None  # made in the actor's event loop, on first use

    def _condition(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    def _queue(self, key: Key) -> asyncio.Queue:
        if key not in self._tasks:
            self._tasks[key] = asyncio.Queue(maxsize=self._task_slots)
        return self._tasks[key]

    def put_task(self, key: Key, task: Any) -> bool:
        """Queue a task (or the stop marker) for `key`; False when its queue is full."""
        try:
            self._queue(key).put_nowait(task)
            return True
        except asyncio.QueueFull:
            return False

    async def get_task(self, key: Key, timeout: float) -> tuple[bool, Any]:
        """(True, the next task), or (False, None) after `timeout` seconds without one."""
        try:
            return True, await asyncio.wait_for(self._queue(key).get(), timeout)
        except TimeoutError:
            return False, None

    async def put_message(self, key: Key, message: Any) -> None:
        changed = self._condition()
        async with changed:
            await changed.wait_for(lambda: key in self._dropped or self._waiting[key] < self._message_slots)
            if key in self._dropped:
                return  # from a lost actor: nobody reads it any more
            self._messages.append((key, message))
            self._waiting[key] += 1
            changed.notify_all()

    async def take(self, timeout: float, limit: int) -> list[tuple[Key, Any]]:
        """Up to `limit` messages, oldest first, waiting up to `timeout` seconds for the first one."""
        changed = self._condition()
        async with changed:
            if not self._messages:
                try:
                    await asyncio.wait_for(changed.wait_for(lambda: bool(self._messages)), timeout)
                except TimeoutError:
                    return []
            taken = [self._messages.popleft() for _ in range(min(limit, len(self._messages)))]
            for key, _ in taken:
                self._waiting[key] -= 1
            changed.notify_all()  # senders waiting for room
            return taken

    async def drop(self, key: Key) -> None:
        """Forget a lost actor's key: its tasks, the messages it left, and any send it is still waiting on."""
        changed = self._condition()
        async with changed:
            self._dropped.add(key)
            self._tasks.pop(key, None)
            self._messages = collections.deque(m for m in self._messages if m[0] != key)
            self._waiting.pop(key, None)
            changed.notify_all()


class MailboxTasks:
    """A worker's end for its tasks, as `QueueChannel` reads a queue: `get(timeout=)`, raising queue.Empty."""

    def __init__(self, mailbox: Any, key: Key):
        self.mailbox, self.key = mailbox, key

    def get(self, timeout: float) -> Any:
        import ray

        got, task = ray.get(self.mailbox.get_task.remote(self.key, timeout))
        if not got:
            raise queue.Empty
        return task


class MailboxMessages:
    """A worker's end for its messages and log records: `put(message)`, waiting while its line is full."""

    def __init__(self, mailbox: Any, key: Key):
        self.mailbox, self.key = mailbox, key

    def put(self, message: Any) -> None:
        import ray

        ray.get(self.mailbox.put_message.remote(self.key, message))
