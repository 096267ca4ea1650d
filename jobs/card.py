"""A job's card in Redis: what a worker's log POST needs to know of the job, without reading PostgreSQL.

The log POST is the hottest request there is. It needs the job's queue and repository (may this token
report for it?), its current attempt, whether a cancel was requested, and how far its log has been
stored (bytes, truncated, persisted_through). Reading them from the database costs a pooled connection
and a query per request; the card holds them in one Redis hash, read on the event loop.

A process also keeps, in memory, what never changes for a job it has read (its queue and repository), so
it can check a token before the one round trip that reads the card and pushes the parts (push()).

Who writes it:
- A log POST that finds no card reads the job from the database and fills the card (CARD_SECONDS to live).
  Every state POST reads the job from the database and fills the card as well: a worker reports "started"
  before its first log part, so that part, too, finds the card.
- Every commit that changes what the card holds updates it afterwards: storing log parts (the flush's
  store, jobs/tasks.py), a cancel and a restart (Job.request_cancel, Job.restart; these also drop the
  card at once, inside their transaction).

Why a late or lost write cannot make it wrong for long: writes merge, they never overwrite blindly. A
newer attempt replaces the card; an older attempt's write is ignored; within one attempt, cancel,
truncated, bytes and persisted_through only grow (so a fill that read the row before a flush committed
cannot undo that flush's update, and a fill from before a restart cannot bring the old attempt back).
A restart or a cancel drops the card inside its transaction, and cannot commit while Redis is away. An
update lost after a commit (a crash between the commit and the write) leaves the card behind until it
expires: that delays news (a cancel, persisted_through), and a POST naming an attempt the card does not
hold reads the database again. Only if that loss also met a fill racing the restart's commit could a
worker that names no attempt send parts to the old attempt (the flush drops them) for CARD_SECONDS."""

import functools
import logging
from dataclasses import dataclass

import redis
from django.apps import apps
from django.conf import settings
from django.db import transaction

from buildboard.lib.compiled import Compiled
from buildboard.lib.dbthread import in_db_thread

from . import ingest

log = logging.getLogger(__name__)

CARD_SECONDS = 60

# KEYS[1] the card; ARGV: attempt, cancel, truncated, bytes, persisted_through, seconds to live (for a new
# card), then from a fill the queue, owner and name. An update without them makes a card a POST still
# fills (read() needs the queue), so a fill that read the row before a restart finds the newer attempt.
_MERGE = """
local current = redis.call('hget', KEYS[1], 'attempt')
local attempt = tonumber(ARGV[1])
if current and tonumber(current) > attempt then return 0 end
if current and tonumber(current) == attempt then
  local names = {'cancel', 'truncated', 'bytes', 'persisted'}
  for i, name in ipairs(names) do
    local value = tonumber(redis.call('hget', KEYS[1], name))
    if value and value > tonumber(ARGV[i + 1]) then ARGV[i + 1] = tostring(value) end
  end
end
redis.call('hset', KEYS[1], 'attempt', ARGV[1], 'cancel', ARGV[2], 'truncated', ARGV[3], 'bytes', ARGV[4],
           'persisted', ARGV[5])
if #ARGV >= 9 then redis.call('hset', KEYS[1], 'queue', ARGV[7], 'owner', ARGV[8], 'name', ARGV[9]) end
if not current then redis.call('expire', KEYS[1], ARGV[6]) end
return 1
"""


# The log POST in one round trip: the card's attempt and log progress, and (unless it names another attempt or
# the log is truncated) the push of ingest.PUSH_FUNCTION on that attempt. KEYS[1..3] and ARGV[1..9] as for
# the push, KEYS[4] the card, ARGV[10] the attempt the worker named ('' for the current one). Returns {} with
# no card, the card's five values when nothing was pushed, or those five and push()'s three.
_PUSH_ON_CARD = ingest.PUSH_FUNCTION + """
local card = redis.call('hmget', KEYS[4], 'attempt', 'cancel', 'truncated', 'bytes', 'persisted')
if not card[1] then return {} end
if (ARGV[10] ~= '' and ARGV[10] ~= card[1]) or card[3] == '1' then
  return {card[1], card[2], card[3], card[4], card[5]}
end
local pushed = push(card[1], card[4])
return {card[1], card[2], card[3], card[4], card[5], pushed[1], pushed[2], pushed[3]}
"""

# What never changes for a job (its queue and repository), per process, so the POST can check the token
# before its one round trip: job id -> (queue, owner, name).
_facts: dict[int, tuple[str, str, str]] = {}
FACTS_KEPT = 10_000


@dataclass(frozen=True)
class JobCard:
    pk: int
    attempt: int
    cancel_requested: bool
    log_truncated: bool
    log_bytes: int
    log_persisted_through: int
    queue: str
    owner: str
    name: str


def _key(job_id: int) -> str:
    return f"{settings.CHANNEL_PREFIX}:jobcard:{job_id}"


def _dynamic(job) -> list:
    return [job.attempt, int(job.cancel_requested), int(job.log_truncated), job.log_bytes,
            job.log_persisted_through]


def facts(job_id: int) -> tuple[str, str, str] | None:
    """The job's queue, owner and name, if this process has read its card before."""
    return _facts.get(job_id)


def _known(card: "JobCard") -> "JobCard":
    if len(_facts) >= FACTS_KEPT:
        _facts.clear()
    _facts[card.pk] = (card.queue, card.owner, card.name)
    return card


def _card(job_id: int, values: list, facts: tuple[str, str, str]) -> "JobCard":
    attempt, cancel, truncated, size, persisted = values
    return JobCard(pk=job_id, attempt=int(attempt), cancel_requested=cancel == b"1", log_truncated=truncated == b"1",
                   log_bytes=int(size), log_persisted_through=int(persisted), queue=facts[0], owner=facts[1],
                   name=facts[2])


async def read(job_id: int) -> JobCard | None:
    """The job's card, or None if it has none (the caller then fills it from the database)."""
    values = await ingest.aredis().hgetall(_key(job_id))
    if not values or b"queue" not in values:
        return None
    return _known(_card(job_id, [values[k] for k in (b"attempt", b"cancel", b"truncated", b"bytes", b"persisted")],
                        (values[b"queue"].decode(), values[b"owner"].decode(), values[b"name"].decode())))


@dataclass
class Pushed:
    card: JobCard | None  # None: the job has no card (the caller reads the database)
    accepted: "ingest.Accepted | None"  # None: nothing was pushed (another attempt, or the log is truncated)
    full: bool = False  # the job's backlog was full: nothing was pushed


async def push(job_id: int, facts_: tuple[str, str, str], attempt: int | None, body: bytes, size: int,
               channel: str | None) -> Pushed:
    """The card and the push of one request body in one round trip, for a job whose facts() are known
    (the caller has checked the token against them). Pushes only onto the card's attempt, and only if the
    worker named none or that one, and only while the log is not truncated."""
    keys, args, token, now = ingest.push_keys_and_args(job_id, body, size, channel)
    result = await ingest.aredis().register_script(_PUSH_ON_CARD)(
        keys=[*keys, _key(job_id)], args=[*args, "" if attempt is None else attempt])
    if not result:
        return Pushed(None, None)
    card = _card(job_id, result[:5], facts_)
    if len(result) == 5:
        return Pushed(card, None)
    try:
        return Pushed(card, ingest.accepted(job_id, result[5:], token, now))
    except ingest.BufferFull:
        return Pushed(card, None, full=True)


def fill_from_database(job_id: int) -> JobCard | None:
    """Read the job from the database and put its card in Redis; None if there is no job. For sync code
    (the state POST); on the event loop, fill()."""
    rows = _card_row()(job_id)
    if not rows:
        return None
    attempt, cancel, truncated, size, persisted, queue, owner, name = rows[0]
    card = JobCard(pk=job_id, attempt=attempt, cancel_requested=cancel, log_truncated=truncated, log_bytes=size,
                   log_persisted_through=persisted, queue=queue, owner=owner, name=name)
    _update(job_id, [*_dynamic(card), CARD_SECONDS, queue, owner, name])
    return _known(card)


@functools.cache
def _card_row() -> Compiled:
    """What a card holds, read from the job's row and its repository's, by the job's id. Every state POST
    reads it, so the query is compiled once (buildboard/lib/compiled.py): through the ORM, building it took
    most of the read's CPU. Made at first use, as the models import this module."""
    Job = apps.get_model("jobs", "Job")  # noqa: N806
    return Compiled(Job, lambda pk: Job.objects.filter(pk=pk).values_list(
        "attempt", "cancel_requested", "log_truncated", "log_bytes", "log_persisted_through", "queue",
        "build__repository__owner", "build__repository__name"), 1)


async def fill(job_id: int) -> JobCard | None:
    """Read the job from the database (in the sync views' thread) and put its card in Redis; None if there
    is no job."""
    return await in_db_thread(fill_from_database)(job_id)


def _update(job_id: int, values: list) -> None:
    try:
        ingest._redis().register_script(_MERGE)(keys=[_key(job_id)], args=values)
    except redis.RedisError as e:  # the card expires within CARD_SECONDS; the database stays the truth
        log.warning("could not write job %s's card: %r", job_id, e)


def update(job) -> None:
    """Merge the job's committed attempt, cancel and log progress into its card."""
    _update(job.pk, [*_dynamic(job), CARD_SECONDS])


def changing(job) -> None:
    """For a restart or a cancel, inside its transaction: drop the card now (a POST meanwhile fills it from
    the database) and, once the transaction commits, merge the new attempt and cancel into the card, over
    whatever a fill that read the row before the commit put there. While Redis is away the drop fails and
    so does the transaction (the caller answers 503): a card left on the old attempt would send a worker's
    parts to it."""
    ingest._redis().delete(_key(job.pk))
    values = [*_dynamic(job), CARD_SECONDS]
    transaction.on_commit(lambda: _update(job.pk, values))
