"""Log parts on their way from the API to the database: a Redis list per job, drained by one task at a time.

The API pushes each accepted request body as it came (no re-encoding into a Celery message) and
schedules a flush only when nobody owns the list, so under load one transaction stores the parts of
many requests. The guarantees later work builds on:

Durability. The API answers 202 once the body is in the job's list. Redis must persist (AOF with
appendfsync everysec or always; check_persistence() runs at start-up): Redis appends to its AOF before
it replies, so an acknowledged part survives the loss of any one process, Redis included (everysec risks
the last second only if the whole machine goes down). Items leave the list only after the transaction
that stored them has committed.

Ownership. One drainer owns a job's list at a time: an owner key holds its token with a short lease
(LOG_OWNER_LEASE_SECONDS), renewed on every round. Only the current owner removes items, and only those
it read; storing is idempotent (duplicates are skipped under the job's row lock), so a drainer that
stalled past its lease and one that took over cannot lose or double anything between them.

No stalls. A flush retries Redis and database errors in place with backoff (the broker is this same
Redis, so re-queueing would fail just when it is needed). The sweep, run by beat every
LOG_SWEEP_SECONDS, reschedules every list without a live owner: a dead worker's lease runs out within
seconds. A flush hands over to a fresh task after DRAIN_SECONDS, so no task outlives the broker's
visibility timeout, and each run takes a fresh token, so a redelivered copy of a task leaves at once
while the original still drains.

Poison. An item that fails to store for a reason a retry cannot cure is retried part by part; the
parts that still fail are set aside (the caller records them as dead letters for staff, with the error)
and the job's later parts go on being stored.

Backpressure. A job may have at most LOG_BUFFER_MAX_ITEMS requests waiting; beyond that the API answers
429 and the worker resends later, so a stalled database cannot fill Redis's memory."""

import asyncio
import json
import logging
import os
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

import redis
import redis.asyncio
from django.conf import settings
from django.utils import timezone

from buildboard.lib.errors import TRANSIENT_ERRORS

log = logging.getLogger(__name__)

ROUND_ITEMS = 100  # requests stored per transaction at most
DRAIN_SECONDS = 10.0  # then a fresh task takes over, so tasks stay short
RETRY_SECONDS = 60.0  # transient errors are retried in place this long; then the sweep takes over
RETRY_DELAYS = (0.25, 0.5, 1.0, 2.0, 3.0)  # the last repeats: a recovered Redis or database is used within 3 s

DONE, LOST, MORE = "done", "lost", "more"

Batch = tuple[int, list[dict]]  # (attempt, parts)

_lock = threading.Lock()
_client: tuple[int, redis.Redis] | None = None

# One round trip per request: refuse when the job's backlog is full, else append and, if nobody owns the
# list, take it (the caller then schedules the flush). push(attempt, stored) returns {owned (-1: full),
# announced, listeners}. KEYS[1] the buffer, KEYS[2] its owner, KEYS[3] the accepted-bytes key of the job
# without its attempt (the attempt is appended here: jobs/card.py's script learns it from the card, so
# these scripts need one Redis, not a cluster). ARGV[1] the body, [2] the backlog limit, [3] a flush
# token, [4] its lease, [5] the body's log bytes ('' = never announce), [6] the log cap, [7] the accepted
# key's lifetime, [8] the announce time (microseconds since the epoch), [9] the group's Redis channel ('').
#
# Announcing: the accepted key counts the bytes ever accepted for the attempt (it starts from the stored
# bytes, `stored`, and only when nothing is buffered, so nothing in flight can be missing from it). While
# that total is within the log cap, every part of the item will certainly be stored, so the item is marked
# announced (its header carries the announce time) and the caller may show it to viewers at once. With a
# channel, the script also says how many web processes listen to the job's group: with none, the caller
# need not build and send the frame. Nothing can fall between the two: a viewer subscribes before it reads
# the buffer, so one that subscribes after this script reads the item.
PUSH_FUNCTION = """
local function push(attempt, stored)
  if redis.call('llen', KEYS[1]) >= tonumber(ARGV[2]) then return {-1, 0, 0} end
  local accepted = KEYS[3] .. attempt
  local announced = 0
  if ARGV[5] ~= '' then
    local total = redis.call('get', accepted)
    if total or redis.call('llen', KEYS[1]) == 0 then
      total = tonumber(total or stored) + tonumber(ARGV[5])
      redis.call('set', accepted, total, 'EX', ARGV[7])
      if total <= tonumber(ARGV[6]) then announced = 1 end
    end
  end
  local header = attempt .. '\\n'
  if announced == 1 then header = attempt .. ' ' .. ARGV[8] .. '\\n' end
  redis.call('rpush', KEYS[1], header .. ARGV[1])
  local owned = 0
  if redis.call('set', KEYS[2], ARGV[3], 'NX', 'EX', ARGV[4]) then owned = 1 end
  local listeners = 0
  if announced == 1 and ARGV[9] ~= '' then listeners = redis.call('pubsub', 'numsub', ARGV[9])[2] end
  return {owned, announced, listeners}
end
"""
_PUSH = PUSH_FUNCTION + "return push(ARGV[10], ARGV[11])"  # ARGV[10] the attempt, [11] its stored bytes
ACCEPTED_TTL_SECONDS = 7 * 24 * 3600  # an attempt's accepted-bytes total outlives any job that still logs
# Take or keep ownership (refused only while someone else's lease is live): ARGV[1] the token held, ARGV[2]
# the one to hold from now on (the drain renews its lease by passing its own token twice), ARGV[3] the lease.
_OWN = """
local owner = redis.call('get', KEYS[1])
if owner and owner ~= ARGV[1] then return false end
redis.call('set', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
"""
# After a round: drop what was stored; while items remain, keep ownership for another lease, else let go
# of it. Returns 1 while the caller still owns the list and items remain (a request may have pushed after
# our read). The next items are read by a plain LRANGE in the same round trip (_then_read).
_DONE = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('ltrim', KEYS[2], ARGV[2], -1)
if redis.call('llen', KEYS[2]) > 0 then
  redis.call('set', KEYS[1], ARGV[1], 'EX', ARGV[3])
  return 1
end
redis.call('del', KEYS[1])
return 0
"""


class BufferFull(Exception):
    """The job already has LOG_BUFFER_MAX_ITEMS requests waiting to be stored."""


@dataclass
class Poison:
    """A buffered part (or a whole item that could not be read) that cannot be stored."""

    item: bytes  # the buffered item, or the part re-encoded as JSON
    error: str
    attempt: int | None = None
    number: int | None = None
    final: bool = False


def _redis() -> redis.Redis:
    global _client
    with _lock:
        if _client is None or _client[0] != os.getpid():
            _client = (os.getpid(), redis.Redis.from_url(
                settings.REDIS_URL, socket_connect_timeout=settings.REDIS_CONNECT_TIMEOUT,
                socket_timeout=settings.REDIS_SOCKET_TIMEOUT, health_check_interval=30))
        return _client[1]


_aclients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, redis.asyncio.Redis]" = weakref.WeakKeyDictionary()


def aredis() -> redis.asyncio.Redis:
    """The running event loop's Redis client (a connection pool belongs to the loop it was made on), with
    the same timeouts as the threads' client. The server's loop keeps one for its life; a short-lived loop
    (async_to_sync's, in tests and management commands) closes its client as it closes."""
    loop = asyncio.get_running_loop()
    client = _aclients.get(loop)
    if client is None:
        client = _aclients[loop] = redis.asyncio.Redis.from_url(
            settings.REDIS_URL, socket_connect_timeout=settings.REDIS_CONNECT_TIMEOUT,
            socket_timeout=settings.REDIS_SOCKET_TIMEOUT, health_check_interval=30)
        _close_with(loop, client)
    return client


def _close_with(loop: asyncio.AbstractEventLoop, client: redis.asyncio.Redis) -> None:
    close = loop.close

    def closing() -> None:
        loop.close = close
        if _aclients.pop(loop, None) is not None and not loop.is_running():
            try:
                loop.run_until_complete(client.aclose())
            except Exception:  # the loop is going away either way
                log.debug("closing a loop's Redis client failed", exc_info=True)
        close()

    loop.close = closing


def _buffer_key(job_id: int) -> str:
    return f"{settings.CHANNEL_PREFIX}:logbuf:{job_id}"


def _owner_key(job_id: int) -> str:
    return f"{settings.CHANNEL_PREFIX}:logbuf-owner:{job_id}"


def _lease() -> int:
    return settings.LOG_OWNER_LEASE_SECONDS


def _accepted_prefix(job_id: int) -> str:
    """The key counting an attempt's accepted bytes, without the attempt (the push script appends it)."""
    return f"{settings.CHANNEL_PREFIX}:logbuf-accepted:{job_id}:"


@dataclass
class Accepted:
    token: str | None  # a flush token if the caller must schedule a flush
    announced_at: datetime | None  # when the parts may be shown to viewers at once (None: after storing)
    listeners: int = 0  # web processes listening to the job's group then (when asked, and announced)


def push_keys_and_args(job_id: int, body: bytes, size: int | None, channel: str | None
                       ) -> tuple[list, list, str, datetime]:
    """KEYS and ARGV[1..9] of PUSH_FUNCTION for one request body, with its flush token and announce time."""
    token = uuid.uuid4().hex
    now = timezone.now()
    keys = [_buffer_key(job_id), _owner_key(job_id), _accepted_prefix(job_id)]
    args = [body, settings.LOG_BUFFER_MAX_ITEMS, token, _lease(), "" if size is None else size,
            settings.LOG_MAX_BYTES, ACCEPTED_TTL_SECONDS, int(now.timestamp() * 1_000_000), channel or ""]
    return keys, args, token, now


def accepted(job_id: int, result: list, token: str, now: datetime) -> "Accepted":
    """What push() returned, for the caller; BufferFull when the job's backlog was full."""
    owned, announced, listeners = result
    if owned == -1:
        raise BufferFull(job_id)
    return Accepted(token if owned == 1 else None, now if announced else None, listeners)


def accept_parts(job_id: int, attempt: int, body: bytes, size: int | None = None, stored_bytes: int = 0,
                 channel: str | None = None) -> Accepted:
    """Append one validated request body holding `size` bytes of log content to the job's buffer.

    With `size` (and `stored_bytes`, the attempt's stored log bytes as the caller read them), the item is
    marked announced while the attempt's accepted bytes stay within the log cap: its parts will certainly
    be stored, so viewers may see them now, and readers (jobs/logread.py) show them until they are. With
    `channel` (the job's group as doorbell.redis_channel names it), Accepted.listeners says whether anyone
    would receive that frame.
    Raises BufferFull when the job's backlog is full, and Redis errors when Redis is out of reach."""
    keys, args, token, now = push_keys_and_args(job_id, body, size, channel)
    result = _redis().register_script(_PUSH)(keys=keys, args=[*args, attempt, stored_bytes])
    return accepted(job_id, result, token, now)


async def aaccept_parts(job_id: int, attempt: int, body: bytes, size: int | None = None, stored_bytes: int = 0,
                        channel: str | None = None) -> Accepted:
    """accept_parts for a view on the event loop: the same script, through the loop's Redis client."""
    keys, args, token, now = push_keys_and_args(job_id, body, size, channel)
    result = await aredis().register_script(_PUSH)(keys=keys, args=[*args, attempt, stored_bytes])
    return accepted(job_id, result, token, now)


def buffer_parts(job_id: int, attempt: int, body: bytes) -> str | None:
    """Append one validated request body, never announced; returns a flush token if the caller must
    schedule a flush. Raises as accept_parts does."""
    return accept_parts(job_id, attempt, body).token


def _decode(item: bytes) -> Batch:
    """(attempt, parts); each part says when it was announced ("announced_us", microseconds since the
    epoch, from the item's header; whatever the worker sent under that name is overwritten) or None."""
    header, _, body = item.partition(b"\n")
    attempt, _, announced = header.partition(b" ")
    parts = json.loads(body)["parts"]
    if not isinstance(parts, list) or not all(
            isinstance(p, dict) and type(p.get("number")) is int and isinstance(p.get("content"), str) for p in parts):
        raise ValueError("the buffered item does not hold a list of parts with a number and content")
    announced_us = int(announced) if announced else None
    for part in parts:
        part["announced_us"] = announced_us
    return int(attempt), parts


def announced_parts(job_id: int, attempt: int) -> list[dict]:
    """The announced parts of `attempt` still in the job's buffer, in buffer order (a part number may
    repeat; the first is the one that will be stored). Unreadable items are skipped."""
    parts: list[dict] = []
    for item in _redis().lrange(_buffer_key(job_id), 0, -1):
        if b" " not in item[:item.find(b"\n")]:
            continue  # not announced: viewers learn of it once it is stored
        try:
            item_attempt, item_parts = _decode(item)
        except (ValueError, KeyError, TypeError):
            continue
        if item_attempt == attempt:
            parts.extend(item_parts)
    return parts


def _describe(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}"
    # Kept in a text column and shown to staff: no NUL, no lone surrogate.
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode()[:2000]


def _store_round(job_id: int, items: list[bytes], store: Callable[[int, list[Batch]], None],
                 set_aside: Callable[[int, list[Poison]], None]) -> None:
    """Store one round; transient errors propagate (the items stay for a retry), anything else is
    narrowed down to the parts that cause it, which are set aside."""
    readable: list[tuple[bytes, Batch]] = []
    poison: list[Poison] = []
    for item in items:
        try:
            readable.append((item, _decode(item)))
        except (ValueError, KeyError, TypeError) as e:
            poison.append(Poison(item=item, error=_describe(e)))
    try:
        if readable:
            store(job_id, [batch for _, batch in readable])
    except TRANSIENT_ERRORS:
        raise
    except Exception as e:
        log.warning("storing the log parts of job %s failed (%r); storing them one by one", job_id, e)
        for _, (attempt, parts) in readable:
            for part in parts:
                try:
                    store(job_id, [(attempt, [part])])
                except TRANSIENT_ERRORS:
                    raise
                except Exception as part_error:
                    poison.append(Poison(item=json.dumps(part).encode(), error=_describe(part_error),
                                         attempt=attempt, number=part["number"], final=bool(part.get("final"))))
    if poison:
        set_aside(job_id, poison)


def drain(job_id: int, token: str, store: Callable[[int, list[Batch]], None],
          set_aside: Callable[[int, list[Poison]], None], seconds: float = DRAIN_SECONDS) -> str:
    """Store everything buffered for a job, round by round, while holding its owner token.

    `store` and `set_aside` must commit before returning: only then are the items removed from the list.
    Returns DONE (nothing left, ownership released), LOST (someone else owns the list) or MORE (time is
    up while items remain; the caller hands over to a fresh task, still owning the list)."""
    r = _redis()
    owner, buffer = _owner_key(job_id), _buffer_key(job_id)
    keep, done = r.register_script(_OWN), r.register_script(_DONE)
    until = time.monotonic() + seconds
    owned, items = _then_read(r, keep, [owner], [token, token, _lease()], buffer)
    if not owned:
        return LOST
    while True:
        if items:
            _store_round(job_id, items, store, set_aside)
        more, items = _then_read(r, done, [owner, buffer], [token, len(items), _lease()], buffer)
        if not more:
            return DONE
        if time.monotonic() >= until:
            return MORE


def _then_read(r: redis.Redis, script, keys: list, args: list, buffer: str) -> tuple:
    """Run a small script, then read the next round's items with a plain LRANGE, in one round trip. Only
    the owner removes items, so what is read after the script is what the owner may store. (A script that
    returns the items instead copies each one twice: 0.24 ms of Redis's CPU for five requests' bodies,
    against 0.01 ms for LRANGE.) Returns the script's result and the items."""
    def run() -> tuple:
        pipe = r.pipeline(transaction=False)
        pipe.evalsha(script.sha, len(keys), *keys, *args)
        pipe.lrange(buffer, 0, ROUND_ITEMS - 1)
        return tuple(pipe.execute())

    try:
        return run()
    except redis.exceptions.NoScriptError:  # Redis lost its scripts (a restart) and did not run this one
        r.script_load(script.script)
        return run()


def own(job_id: int, token: str) -> str | None:
    """Start a flush run: exchange the task's token for a fresh one, so a redelivered copy of the same
    task finds it spent. None if someone else holds a live lease."""
    fresh = uuid.uuid4().hex
    owned = _redis().register_script(_OWN)(keys=[_owner_key(job_id)], args=[token, fresh, _lease()])
    return fresh if owned else None


def _delays() -> Iterator[float]:
    yield from RETRY_DELAYS
    while True:
        yield RETRY_DELAYS[-1]


def flush(job_id: int, token: str, store: Callable[[int, list[Batch]], None],
          set_aside: Callable[[int, list[Poison]], None], retry_seconds: float = RETRY_SECONDS,
          sleep: Callable[[float], None] = time.sleep) -> tuple[str, str | None]:
    """One flush run: own the list, drain it, and retry Redis or database errors in place.

    Returns (outcome, token): MORE with the token to hand over to the next task, else DONE or LOST.
    After retry_seconds of failures it gives up quietly; the lease runs out and the sweep reschedules."""
    delays, give_up = _delays(), time.monotonic() + retry_seconds
    current: str | None = None
    while True:
        try:
            if current is None:
                current = own(job_id, token)
                if current is None:
                    return LOST, None
            outcome = drain(job_id, current, store, set_aside)
            return outcome, current if outcome == MORE else None
        except TRANSIENT_ERRORS as e:
            if time.monotonic() >= give_up:
                log.warning("flushing job %s: still failing after %.0f s (%r); the sweep will retry",
                            job_id, retry_seconds, e)
                return LOST, None
            delay = next(delays)
            log.info("flushing job %s: %r; retrying in %.2f s", job_id, e, delay)
            sleep(delay)


def orphaned_jobs() -> list[int]:
    """Jobs with buffered parts and no live owner (its worker died or stalled past the lease)."""
    r = _redis()
    prefix = f"{settings.CHANNEL_PREFIX}:logbuf:"
    job_ids = [int(key.decode()[len(prefix):]) for key in r.scan_iter(match=prefix + "*", count=1000)]
    if not job_ids:
        return []
    pipe = r.pipeline(transaction=False)
    for job_id in job_ids:
        pipe.exists(_owner_key(job_id))
    return [job_id for job_id, owned in zip(job_ids, pipe.execute(), strict=True) if not owned]


def claim(job_id: int) -> str | None:
    """Take ownership of an orphaned job's list; returns the token, or None if someone has it."""
    token = uuid.uuid4().hex
    return token if _redis().set(_owner_key(job_id), token, nx=True, ex=_lease()) else None


def pending(job_id: int) -> int:
    """How many requests of a job wait in its list."""
    return _redis().llen(_buffer_key(job_id))


# --- durability ------------------------------------------------------------------------------------


def persistence_problem(client: redis.Redis | None = None) -> str | None:
    """Why Redis would lose acknowledged parts on a restart, or None if its AOF keeps them."""
    info = (client or _redis()).info("persistence")
    if not int(info.get("aof_enabled", 0)):
        return "Redis runs without AOF (appendonly no): accepted log parts would be lost when it restarts"
    try:
        fsync = (client or _redis()).config_get("appendfsync").get("appendfsync")
    except redis.ResponseError:  # managed Redis services may refuse CONFIG; AOF is on, trust its policy
        return None
    if fsync not in ("everysec", "always"):
        return f"Redis's AOF is written with appendfsync {fsync}; use everysec or always"
    return None


def check_persistence() -> None:
    """At start-up of web and Celery processes: refuse (REDIS_PERSISTENCE=require, the default with
    DEBUG=False) or warn loudly (warn, the default with DEBUG) about a Redis that would lose parts."""
    mode = settings.REDIS_PERSISTENCE
    if mode == "off":
        return
    try:
        problem = persistence_problem()
    except redis.RedisError as e:
        log.warning("could not check Redis persistence at start-up: %r", e)
        return
    if problem is None:
        return
    message = f"{problem}. See README, 'Deploying at scale'. (REDIS_PERSISTENCE={mode})"
    if mode == "require":
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(message)
    log.warning("\n%s\n%s\n%s", "!" * 100, message, "!" * 100)
