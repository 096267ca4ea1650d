"""The one way to read a job's log back: every reader goes through here.

The API's `GET /api/v1/jobs/{id}/log?after=N`, the websocket replay (`?after=N`), `/jobs/{id}/log.txt`
and the pages' failure excerpts all read parts with these functions, so wherever parts live every reader
sees the same parts, in part order, each once: the database, plus the parts the API announced from the
job's Redis buffer (see ingest.accept_parts) that the drain has not stored yet, so a reader that joins
or refetches sees every part a frame promised; or the archive once the attempt is over (jobs/archive.py).

A part is a dict: {"number": int, "content": str, "final": bool, "at": datetime}."""

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import islice

import redis
from django.conf import settings

from . import archive as archives
from . import ingest
from .archive import LogUnavailable  # noqa: F401 (readers catch it from here)
from .states import FINAL_STATES

CHUNK_PARTS = 500  # parts fetched per query when streaming

log = logging.getLogger(__name__)


def _stored(job, attempt: int, after: int):
    return (job.parts.filter(attempt=attempt, number__gt=after).order_by("number")
            .values_list("number", "content", "final", "created_at"))


def _archive(job, attempt: int):
    """The attempt's archive, if its log left the database (only a finished attempt's can have)."""
    if attempt == job.attempt and job.state not in FINAL_STATES:
        return None
    return archives.archive_for(job, attempt)


def _from_archive(job, attempt: int, archive, after: int, reader=None) -> Iterator[dict]:
    reader = reader or archives.Reader(archive)  # raises LogUnavailable before anything is served
    try:
        # Parts stored after the archive (a late part) are few: read them at once, no cursor left open.
        live = [_part(*row) for row in _stored(job, attempt, after)]
        yield from archives.merged(reader.parts(after), iter(live))
    finally:
        reader.close()


def _part(number: int, content: str, final: bool, at) -> dict:
    return {"number": number, "content": content, "final": final, "at": at}


def _buffered(job, attempt: int, after: int) -> list[dict]:
    """The current attempt's parts announced from the job's Redis buffer and maybe not stored yet, in
    part order, each number once (the first buffered, as the drain stores it).

    Read BEFORE the database: a part leaves the buffer only after the transaction that stored it has
    committed, so a part missing from this read is in the database read that follows."""
    if attempt != job.attempt:
        return []  # an earlier attempt's buffered parts are never stored
    try:
        buffered = ingest.announced_parts(job.pk, attempt)
    except redis.RedisError as e:  # what is stored is still worth showing; frames say to look again
        log.warning("reading job %s's buffered log parts failed (%r); showing the stored ones", job.pk, e)
        return []
    parts: dict[int, dict] = {}
    for part in buffered:
        if part["number"] > after and part["number"] not in parts:
            at = datetime.fromtimestamp(part["announced_us"] / 1_000_000, UTC)
            parts[part["number"]] = _part(part["number"], part["content"], bool(part.get("final")), at)
    return [parts[number] for number in sorted(parts)]


def read_parts(job, attempt: int | None = None, after: int = -1, limit: int | None = None) -> list[dict]:
    """Parts of an attempt (the current one by default) numbered above `after`, in part order, each
    once; at most `limit` of them. Stored parts and the parts announced from the buffer, or the archive."""
    attempt = attempt or job.attempt
    archive = _archive(job, attempt)
    if archive is None:
        parts = _live_parts(job, attempt, after, limit)
        # Archived between our two looks: the parts just left for the archive.
        if parts or (archive := _archive(job, attempt)) is None:
            return parts
    return list(islice(_from_archive(job, attempt, archive, after), limit))


def _live_parts(job, attempt: int, after: int, limit: int | None) -> list[dict]:
    buffered = _buffered(job, attempt, after)
    rows = _stored(job, attempt, after)
    if limit is not None:
        rows = rows[:limit]
    parts = [_part(*row) for row in rows]
    if buffered:
        stored = {part["number"] for part in parts}
        if limit is not None and len(parts) == limit:  # the database has more beyond this page
            buffered = [part for part in buffered if part["number"] < parts[-1]["number"]]
        parts = sorted([*parts, *(part for part in buffered if part["number"] not in stored)],
                       key=lambda part: part["number"])
    return parts if limit is None else parts[:limit]


def iter_parts(job, attempt: int | None = None, after: int = -1, chunk: int = CHUNK_PARTS,
               reader=None) -> Iterator[dict]:
    """The same parts as read_parts, streamed a chunk of rows at a time (for long logs). Raises
    LogUnavailable (at the first step) when the log is archived and its object cannot be read."""
    attempt = attempt or job.attempt
    if reader is not None:
        yield from _from_archive(job, attempt, reader.archive, after, reader)
        return
    archive = _archive(job, attempt)
    if archive is None:
        served = False
        for part in _iter_live(job, attempt, after, chunk):
            served = True
            yield part
        if served or (archive := _archive(job, attempt)) is None:
            return
    yield from _from_archive(job, attempt, archive, after)


def _iter_live(job, attempt: int, after: int, chunk: int) -> Iterator[dict]:
    buffered = _buffered(job, attempt, after)
    i = 0
    for row in _stored(job, attempt, after).iterator(chunk_size=chunk):
        while i < len(buffered) and buffered[i]["number"] < row[0]:
            yield buffered[i]
            i += 1
        if i < len(buffered) and buffered[i]["number"] == row[0]:
            i += 1  # stored meanwhile: the database's copy
        yield _part(*row)
    yield from buffered[i:]


TRUNCATION_MARKER = "\n\x1b[33;1m[buildboard] Log truncated: it exceeded the {limit} limit.\x1b[0m\n"


def _human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:g} {unit}" if unit == "B" else f"{n:.0f} {unit}"
        n /= 1024
    return str(n)


def open_text(job, attempt: int | None = None) -> Iterator[str]:
    """iter_text for a response that streams: an archived log is opened and checked now (LogUnavailable is
    raised here, before a status is sent), and nothing is read from the database until the first piece."""
    archive = _archive(job, attempt or job.attempt)
    return iter_text(job, attempt, reader=archives.Reader(archive) if archive else None)


def iter_text(job, attempt: int | None = None, reader=None) -> Iterator[str]:
    """The log's text piece by piece, as log.txt serves it: the parts' content, then the truncation
    marker if the current attempt's log was cut at the cap."""
    for part in iter_parts(job, attempt, reader=reader):
        yield part["content"]
    if job.log_truncated and attempt in (None, job.attempt):
        yield TRUNCATION_MARKER.format(limit=_human_bytes(settings.LOG_MAX_BYTES))


def log_text(job, attempt: int | None = None) -> str:
    """The whole log of an attempt as one string."""
    return "".join(iter_text(job, attempt))


def tail_contents(job, min_chars: int, attempt: int | None = None) -> list[str]:
    """The contents of the last parts of an attempt, in part order, at least `min_chars` characters of
    them when the log is that long (for excerpts of logs too big to read whole)."""
    attempt = attempt or job.attempt
    if _archive(job, attempt) is not None:
        tail, size = [], 0
        for part in reversed([p["content"] for p in iter_parts(job, attempt)]):
            tail.append(part)
            size += len(part)
            if size >= min_chars:
                break
        return tail[::-1]
    tail: list[str] = []
    size = 0
    rows = job.parts.filter(attempt=attempt or job.attempt).order_by("-number").values_list("content", flat=True)
    for content in rows:
        tail.append(content)
        size += len(content)
        if size >= min_chars:
            break
    return tail[::-1]
