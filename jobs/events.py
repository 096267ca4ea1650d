"""Announcements on the channel layer: the database is the truth, these frames are a doorbell.

Every frame names the job/build and the sequence or part number it is about, so a client that
notices a gap (channels_redis drops messages when a channel is full) refetches from the database."""

from collections.abc import Awaitable, Callable

from buildboard.lib.doorbell import announce_now, announce_on_commit

ALL_GROUP = "jobs-all"


def job_group(job_id: int) -> str:
    return f"job-{job_id}"


def build_group(build_id: int) -> str:
    return f"build-{build_id}"


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
        "worker_version": job.worker_version,
    }


def build_state_frame(build) -> dict:
    return {
        "type": "build.state",
        "build_id": build.pk,
        "repository": build.repository.slug if "repository" in build._state.fields_cache else None,
        "repository_id": build.repository_id,
        "owner": build.repository.owner,
        "name": build.repository.name,
        # Consumers of the all-builds group filter on this, so anonymous viewers never see private work.
        "private": build.repository.private,
        "branch": build.branch,
        "event": build.event,
        "commit": build.commit,
        "created_at": build.created_at.isoformat(),
        "number": build.number,
        "seq": build.seq,
        "state": build.state,
        "started_at": build.started_at.isoformat() if build.started_at else None,
        "finished_at": build.finished_at.isoformat() if build.finished_at else None,
    }


def announce_job(job) -> None:
    # Not to ALL_GROUP: its consumer (the home and repository pages) shows builds, not jobs.
    announce_on_commit([job_group(job.pk), build_group(job.build_id)], job_state_frame(job))


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
        "parts": [{"number": p.number, "content": p.content, "final": p.final, "at": p.created_at.isoformat()}
                  for p in parts],
        "persisted_through": job.log_persisted_through,
    }
    announce_on_commit([job_group(job.pk)], frame)


def announce_buffered_parts(job, attempt: int, parts, at) -> Callable[[], Awaitable[None]]:
    """Parts the API has just put in the job's buffer, announced as soon as they are durable there (see
    ingest.accept_parts); the drain announces nothing more about them. A number repeated in one request
    is announced once, as it will be stored: the first one. This process's viewers have the frame at once;
    the function returned sends it to the other processes' (doorbell.announce_now)."""
    seen: set[int] = set()
    frame_parts = []
    for part in parts:
        if part.number not in seen:
            seen.add(part.number)
            frame_parts.append({"number": part.number, "content": part.content, "final": part.final,
                                "at": at.isoformat()})
    return announce_now([job_group(job.pk)], {
        "type": "log.parts",
        "job_id": job.pk,
        "attempt": attempt,
        "parts": frame_parts,
        "persisted_through": job.log_persisted_through,
    })
