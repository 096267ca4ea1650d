"""The doorbell every live page shares: after a commit (or once data is durable elsewhere), a frame to
channel-layer groups.

Every announcer in the apps (jobs, fleet, the status page, access changes) goes through here; nothing
else calls group_send. Frames rung from sync code leave from one long-lived event loop per process; a view
that runs on the server's event loop (the worker's log POST) rings on that loop. Frames to the same
groups leave in the order they were rung (a job's parts arrive in order, so viewers rarely hold one back),
while frames to other groups do not wait behind them.
The database is the truth and these frames only say "look again"; a frame lost (channels_redis drops
messages when a channel is full, Redis may be away) costs a refetch, never data."""

import asyncio
import logging
import os
import threading
import weakref
from collections.abc import Awaitable, Callable

from channels.layers import get_channel_layer
from django.db import transaction

log = logging.getLogger(__name__)

_loop_lock = threading.Lock()
_loop: tuple[int, asyncio.AbstractEventLoop] | None = None
# Per event loop, per tuple of groups: the lock its frames take turns on, and how many frames hold or wait
# for it (the entry goes when that reaches 0).
_turns: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, ...], tuple[asyncio.Lock, int]]]" = (
    weakref.WeakKeyDictionary())


def _announcer_loop() -> asyncio.AbstractEventLoop:
    """One long-lived event loop per process for announcements, so the channel layer keeps its Redis
    connections instead of opening new ones for every message (as a fresh async_to_sync loop would).
    Keyed by pid: a forked Celery child must not use its parent's loop."""
    global _loop
    with _loop_lock:
        if _loop is None or _loop[0] != os.getpid():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="channel-announcer", daemon=True).start()
            _loop = (os.getpid(), loop)
        return _loop[1]


async def _send_all(send: Callable[[str, dict], Awaitable[None]], groups: list[str], message: dict) -> None:
    """Send after the frames rung earlier to the same groups. Coroutines start in the order they were
    scheduled and asyncio.Lock wakes its waiters first come first served, so sends to the same groups
    keep their order even when an earlier one waits on Redis longer than a later one would."""
    key = tuple(groups)
    turns = _turns.setdefault(asyncio.get_running_loop(), {})
    lock, holders = turns.get(key, (None, 0))
    lock = lock or asyncio.Lock()
    turns[key] = (lock, holders + 1)
    try:
        async with lock:
            for group in groups:
                await send(group, message)
    finally:
        lock, holders = turns[key]
        if holders == 1:
            del turns[key]
        else:
            turns[key] = (lock, holders - 1)


def ring(groups: list[str], message: dict) -> None:
    """Send `message` to every group now. For code that already runs after the commit (an on_commit
    callback that must read the committed state first); everything else uses announce_on_commit."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        asyncio.run_coroutine_threadsafe(_send_all(layer.group_send, groups, message),
                                         _announcer_loop()).result(timeout=10)
    except Exception:  # a lost doorbell is tolerated by design; the data is committed
        log.exception("channel layer announcement failed")


def announce_now(groups: list[str], message: dict) -> Callable[[], Awaitable[None]]:
    """Ring at once, from a view on the event loop, about data that is already durable outside the database
    (log parts in the job's Redis buffer, which the log readers also read). This process's own consumers of
    the groups have the frame when this returns, so the loop writes it to their sockets as soon as the view
    lets go of it, beside its answer. Awaiting the function returned (after the answer) sends the frame to
    the other processes, after the frames to the same groups that started sending before it. A lost frame
    is only logged."""
    layer = get_channel_layer()
    if layer is not None:
        try:
            for group in groups:
                layer.group_send_here(group, message)
        except Exception:
            log.exception("channel layer announcement failed")

    async def elsewhere() -> None:
        if layer is None:
            return
        try:
            await _send_all(layer.group_send_elsewhere, groups, message)
        except Exception:
            log.exception("channel layer announcement failed")

    return elsewhere


def redis_channel(group: str) -> str | None:
    """The Redis channel of a group, for a Redis script that asks whether anyone listens there before the
    caller builds a frame nobody would receive (jobs/ingest.py). None without a channel layer."""
    layer = get_channel_layer()
    return None if layer is None else layer.redis_channel(group)


def announce_on_commit(groups: list[str], message: dict) -> None:
    """Ring the doorbell once the current transaction commits (at once outside one); never on rollback."""
    transaction.on_commit(lambda: ring(groups, message))
