"""Log parts on their way from the API to the database: a Redis list per job, drained by one task.

The API pushes each accepted request body as it came (no re-encoding into a Celery message) and
schedules a flush only when none is pending, so under load one transaction stores the parts of many
requests. The list lives in the same Redis as the Celery broker, so an accepted part is exactly as
durable as a queued task would be; items leave the list only after the transaction that stored them
has committed, and a periodic sweep reschedules lists whose flush was lost with a dead worker."""

import json
import os
import threading
import uuid
from collections.abc import Callable

import redis
from django.conf import settings

# How long a drainer owns a job's list; renewed on every round, so only a stuck worker loses it.
LOCK_SECONDS = 600
ROUND_ITEMS = 100

_lock = threading.Lock()
_client: tuple[int, redis.Redis] | None = None

# One round trip per drain round: keep ownership (taking it if it lapsed) and read the next items.
_TAKE = """
local owner = redis.call('get', KEYS[1])
if owner and owner ~= ARGV[1] then return false end
redis.call('set', KEYS[1], ARGV[1], 'EX', ARGV[2])
return redis.call('lrange', KEYS[2], 0, ARGV[3] - 1)
"""
# After a round: drop what was stored; when nothing is left, let go of ownership. Returns 1 while the
# caller still owns the buffer and items remain (a request may have pushed after our read).
_DONE = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('ltrim', KEYS[2], ARGV[2], -1)
if redis.call('llen', KEYS[2]) > 0 then return 1 end
redis.call('del', KEYS[1])
return 0
"""


def _redis() -> redis.Redis:
    global _client
    with _lock:
        if _client is None or _client[0] != os.getpid():
            _client = (os.getpid(), redis.Redis.from_url(settings.REDIS_URL))
        return _client[1]


def _buffer_key(job_id: int) -> str:
    return f"{settings.CHANNEL_PREFIX}:logbuf:{job_id}"


def _owner_key(job_id: int) -> str:
    return f"{settings.CHANNEL_PREFIX}:logbuf-owner:{job_id}"


def buffer_parts(job_id: int, attempt: int, body: bytes) -> str | None:
    """Append one validated request body; returns a flush token if the caller must schedule a flush."""
    token = uuid.uuid4().hex
    pipe = _redis().pipeline(transaction=False)
    pipe.rpush(_buffer_key(job_id), b"%d\n" % attempt + body)
    pipe.set(_owner_key(job_id), token, nx=True, ex=LOCK_SECONDS)
    _, owned = pipe.execute()
    return token if owned else None


def _decode(items: list[bytes]) -> list[tuple[int, list[dict]]]:
    batches = []
    for item in items:
        attempt, _, body = item.partition(b"\n")
        batches.append((int(attempt), json.loads(body)["parts"]))
    return batches


def drain(job_id: int, token: str, store: Callable[[int, list[tuple[int, list[dict]]]], None]) -> None:
    """Store everything buffered for a job, round by round, while holding its owner token.

    `store` must commit before returning: only then are the items removed from the list."""
    r = _redis()
    keys = [_owner_key(job_id), _buffer_key(job_id)]
    take, done = r.register_script(_TAKE), r.register_script(_DONE)
    while True:
        items = take(keys=keys, args=[token, LOCK_SECONDS, ROUND_ITEMS])
        if items is None:
            return  # someone else is draining this job
        if items:
            store(job_id, _decode(items))
        if not done(keys=keys, args=[token, len(items)]):
            return


def orphaned_jobs() -> list[int]:
    """Jobs with buffered parts and no drainer (its worker died): the sweep reschedules them."""
    r = _redis()
    prefix = f"{settings.CHANNEL_PREFIX}:logbuf:"
    jobs = []
    for key in r.scan_iter(match=prefix + "*", count=500):
        job_id = int(key.decode()[len(prefix):])
        if not r.exists(_owner_key(job_id)):
            jobs.append(job_id)
    return jobs


def claim(job_id: int) -> str | None:
    """Take ownership of an orphaned job's buffer; returns the token, or None if someone has it."""
    token = uuid.uuid4().hex
    return token if _redis().set(_owner_key(job_id), token, nx=True, ex=LOCK_SECONDS) else None
