"""Announcements on the channel layer: the database is the truth, these frames are a doorbell.

Every frame names the job/build and the sequence or part number it is about, so a client that
notices a gap (channels_redis drops messages when a channel is full) refetches from the database."""

import asyncio
import logging
import os
import threading

from channels.layers import get_channel_layer
from django.db import transaction

log = logging.getLogger(__name__)

ALL_GROUP = "jobs-all"


def job_group(job_id: int) -> str:
    return f"job-{job_id}"


def build_group(build_id: int) -> str:
    return f"build-{build_id}"


_loop_lock = threading.Lock()
_loop: tuple[int, asyncio.AbstractEventLoop] | None = None


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


def _send(groups: list[str], message: dict) -> None:
    layer = get_channel_layer()
    if layer is None:
        return

    async def send_all() -> None:
        for group in groups:
            await layer.group_send(group, message)

    try:
        asyncio.run_coroutine_threadsafe(send_all(), _announcer_loop()).result(timeout=10)
    except Exception:  # a lost doorbell is tolerated by design; the data is committed
        log.exception("channel layer announcement failed")


def job_state_frame(job) -> dict:
    return {
        "type": "job.state",
        "job_id": job.pk,
        "build_id": job.build_id,
        "seq": job.seq,
        "state": job.state,
        "display_state": job.display_state,
        "attempt": job.attempt,
        "exit_code": job.exit_code,
        "inconsistent": job.inconsistent,
        "cancel_requested": job.cancel_requested,
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "log_complete": job.log_complete,
        "log_truncated": job.log_truncated,
        "worker": job.worker,
    }


def build_state_frame(build) -> dict:
    return {
        "type": "build.state",
        "build_id": build.pk,
        "repository": build.repository.slug if "repository" in build._state.fields_cache else None,
        "repository_id": build.repository_id,
        # Consumers of the all-builds group filter on this, so anonymous viewers never see private work.
        "private": build.repository.private,
        "branch": build.branch,
        "commit": build.commit,
        "number": build.number,
        "seq": build.seq,
        "state": build.state,
        "started_at": build.started_at.isoformat() if build.started_at else None,
        "finished_at": build.finished_at.isoformat() if build.finished_at else None,
    }


def announce_on_commit(groups: list[str], message: dict) -> None:
    transaction.on_commit(lambda: _send(groups, message))


def announce_job(job) -> None:
    announce_on_commit([job_group(job.pk), build_group(job.build_id), ALL_GROUP], job_state_frame(job))


def announce_build(build) -> None:
    announce_on_commit([build_group(build.pk), ALL_GROUP], build_state_frame(build))


def announce_log_parts(job, parts) -> None:
    """One frame per batch; each part inside it carries its own number."""
    if not parts:
        return
    frame = {
        "type": "log.parts",
        "job_id": job.pk,
        "attempt": parts[0].attempt,
        "parts": [{"number": p.number, "content": p.content, "final": p.final} for p in parts],
        "persisted_through": job.log_persisted_through,
    }
    announce_on_commit([job_group(job.pk)], frame)
