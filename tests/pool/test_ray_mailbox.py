"""The Ray run's mailbox (chatspace/pool/executors/ray_mailbox.py), driven directly in an event loop as its
actor's would be: tasks per worker, bounded; messages in arrival order, a lost worker's dropped."""

from __future__ import annotations

import asyncio

from chatspace.pool.executors.ray_mailbox import Mailbox


def test_tasks_wait_per_worker_up_to_their_slots_and_a_worker_without_one_times_out():
    async def scenario():
        box = Mailbox(task_slots=2, message_slots=10)
        assert box.put_task((0, 0), "a") and box.put_task((0, 0), "b")
        assert not box.put_task((0, 0), "c")  # full: the scheduler tries again later
        assert box.put_task((1, 0), None)  # another worker's queue is its own (None: the stop marker)
        assert await box.get_task((0, 0), 1.0) == (True, "a")
        assert await box.get_task((1, 0), 1.0) == (True, None)
        assert await box.get_task((1, 0), 0.05) == (False, None)
        assert box.put_task((0, 0), "c")  # room again
        assert [await box.get_task((0, 0), 1.0) for _ in range(2)] == [(True, "b"), (True, "c")]

    asyncio.run(scenario())


def test_messages_come_in_arrival_order_and_a_take_waits_for_the_first():
    async def scenario():
        box = Mailbox(task_slots=2, message_slots=10)
        assert await box.take(0.05, 100) == []  # nothing: waited, then empty
        for key, msg in [((0, 0), "r0"), ((1, 0), "r1"), ((0, 0), "r0b")]:
            await box.put_message(key, msg)
        assert await box.take(0, 2) == [((0, 0), "r0"), ((1, 0), "r1")]  # waiting ones, even at timeout 0
        assert await box.take(0, 2) == [((0, 0), "r0b")]
        waiter = asyncio.ensure_future(box.take(5.0, 10))
        await asyncio.sleep(0.05)
        assert not waiter.done()
        await box.put_message((1, 0), "late")
        assert await waiter == [((1, 0), "late")]

    asyncio.run(scenario())


def test_a_full_line_holds_its_sender_until_taken_and_a_dropped_key_loses_what_it_left():
    async def scenario():
        box = Mailbox(task_slots=2, message_slots=2)
        await box.put_message((0, 0), 1)
        await box.put_message((0, 0), 2)
        blocked = asyncio.ensure_future(box.put_message((0, 0), 3))
        await box.put_message((1, 0), "other")  # another worker's line is not full
        await asyncio.sleep(0.05)
        assert not blocked.done()
        assert await box.take(0, 1) == [((0, 0), 1)]
        await asyncio.wait_for(blocked, 1.0)  # room for it now
        # A lost actor: its messages and tasks go, and a send it still waited on returns without a trace.
        await box.put_message((2, 0), "x")
        await box.put_message((2, 0), "y")
        stuck = asyncio.ensure_future(box.put_message((2, 0), "z"))
        box.put_task((2, 0), "unit")
        await asyncio.sleep(0.05)
        await box.drop((2, 0))
        await asyncio.wait_for(stuck, 1.0)
        assert await box.take(0, 10) == [((0, 0), 2), ((1, 0), "other"), ((0, 0), 3)]
        assert await box.get_task((2, 1), 0.01) == (False, None)  # its replacement's key starts empty
        await box.put_message((2, 0), "after")  # a straggler of the lost actor is dropped too
        assert await box.take(0.05, 10) == []

    asyncio.run(scenario())
