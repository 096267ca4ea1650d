"""The worker API: workers report builds, job states and log parts; anyone allowed reads them back.

Views validate synchronously (the models in schemas.py, which also make /api/v1/openapi.json) and hand
all writing of reports to Celery (see tasks.py). A 202 means the report is in Redis, which the project
requires to run with AOF persistence (see ingest.py): it survives the loss of any one process."""

import json
import re
from collections.abc import Iterator

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.db import IntegrityError
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_safe

from accounts import permissions
from accounts.models import ApiToken
from accounts.tokens import arequire_token, require_token, token_from
from buildboard.lib.doorbell import redis_channel
from buildboard.lib.errors import TRANSIENT_ERRORS
from buildboard.lib.jsonapi import ApiError, Call, Unavailable, openapi_document, operation, respond
from buildboard.lib.publish import aenqueue_soon, enqueue

from . import card, events, ingest, logread, services, tasks
from .models import MAX_BUILD_NUMBER, BuildNumbersExhausted, Job, create_build
from .schemas import (
    Ack,
    BuildIn,
    BuildOut,
    CancelOut,
    ErrorOut,
    JobId,
    JobOut,
    LogAck,
    LogIn,
    LogOut,
    LogQuery,
    RestartOut,
    StateIn,
)
from .states import parse_state

JOB = {"job_id": JobId}


def _require_build_scope(token: ApiToken, repository: str) -> None:
    owner, _, name = repository.partition("/")
    if not permissions.token_may_create_build(token, owner, name):
        raise ApiError(403, f"this {token.kind} token may not create builds in {repository}")


def _get_job_for_worker(request: HttpRequest, job_id: int) -> card.JobCard:
    """A job the token may report for (its queue, or its repositories); others do not exist for it. Read
    from the database, which also refreshes the job's card (jobs/card.py) for the log POSTs that follow."""
    token = require_token(request)
    job = card.fill_from_database(job_id)
    if job is None or not permissions.token_may_report(token, queue=job.queue, owner=job.owner, name=job.name):
        raise ApiError(404, f"job {job_id} does not exist")
    return job


def _get_job_for_reader(request: HttpRequest, job_id: int, *, reporters_too: bool = False) -> Job:
    """A job the caller may read: its user may (public, a role, staff), or its token may. Else 404.
    With reporters_too, a token that may report for the job may also read it: a worker running a job of a
    private repository asks its state and persisted_through to know what to resend (never its log)."""
    job = Job.objects.select_related("build__repository").filter(pk=job_id).first()
    if job is None:
        raise ApiError(404, f"job {job_id} does not exist")
    repository = job.build.repository
    if permissions.can_read(request.user, repository):
        return job
    if "Authorization" in request.headers:
        token = token_from(request)
        if token is not None and (permissions.token_may_read(token, repository)
                                  or reporters_too and _may_report(token, job)):
            return job
    raise ApiError(404, f"job {job_id} does not exist")


def _get_job_for_operator(request: HttpRequest, job_id: int) -> tuple[Job, ApiToken]:
    """A job the token may cancel or restart: 404 if it may not read it, 403 if it may only read it."""
    token = require_token(request)
    job = Job.objects.select_related("build__repository").filter(pk=job_id).first()
    if job is None or not (permissions.token_may_read(token, job.build.repository)
                           or _may_report(token, job)):
        raise ApiError(404, f"job {job_id} does not exist")
    if not permissions.token_may_operate(token, job.build.repository):
        raise ApiError(403, f"this {token.kind} token may not cancel or restart jobs of {job.build.repository}")
    return job, token


def _may_report(token: ApiToken, job: Job) -> bool:
    return permissions.token_may_report(token, queue=job.queue, owner=job.build.repository.owner,
                                        name=job.build.repository.name)


def _attempt(attempt: int | None, job: card.JobCard) -> int:
    if attempt is None:
        return job.attempt
    if attempt != job.attempt:
        raise ApiError(409, f"attempt {attempt} is not the job's current attempt ({job.attempt})",
                       current_attempt=job.attempt)
    return attempt


@operation("POST", "/api/v1/builds", summary="Create a build with its jobs", body=BuildIn, auth="required",
           ok=(201, "Created: the build and its jobs' ids", BuildOut), errors=(403, 409),
           links={name: {"job_id": "$response.body#/jobs/0/id"} for name in (
               "job_detail", "job_state", "job_log_append", "job_log", "job_cancel", "job_restart")},
           description="Build numbers count up per repository unless `number` is given.")
def builds_create(request: HttpRequest, call: Call) -> HttpResponse:
    token = require_token(request)
    data = call.body()
    _require_build_scope(token, data.repository)
    numbers = [spec.number for spec in data.jobs if spec.number]
    if len(numbers) != len(set(numbers)):
        raise ApiError(409, "job numbers must be unique within a build")
    try:
        build = create_build(repository=data.repository, branch=data.branch, commit=data.commit,
                             message=data.message, author=data.author, event=data.event, number=data.number,
                             jobs=[spec.model_dump() for spec in data.jobs])
    except IntegrityError:
        raise ApiError(409, f"build number {data.number} already exists in {data.repository}") from None
    except BuildNumbersExhausted:
        raise ApiError(409, f"{data.repository} has used up its build numbers (the last is {MAX_BUILD_NUMBER})"
                       ) from None
    build_jobs = list(build.jobs.order_by("id"))
    for job in build_jobs:
        events.announce_job(job)
    events.announce_build(build)
    return respond({
        "id": build.pk,
        "number": build.number,
        "url": request.build_absolute_uri(build.get_absolute_url()),
        "jobs": [{"id": j.pk, "number": j.number} for j in build_jobs],
    }, status=201)


@operation("POST", "/api/v1/jobs/{job_id}/state", summary="Report a job state", body=StateIn, params=JOB,
           auth="required", ok=(202, "Accepted; `cancel` says whether staff asked to cancel", Ack),
           errors=(404, 409))
def job_state(request: HttpRequest, job_id: int, call: Call) -> HttpResponse:
    job = _get_job_for_worker(request, job_id)
    report = call.body()
    state = parse_state(report.state)
    attempt = _attempt(report.attempt, job)
    at = report.at or timezone.now()
    try:
        enqueue(tasks.apply_job_state, job.pk, attempt, state.value, at.isoformat(), worker=report.worker,
                worker_version=report.worker_version, exit_code=report.exit_code)
    except TRANSIENT_ERRORS:
        raise Unavailable(cancel=job.cancel_requested) from None
    return respond({"cancel": job.cancel_requested}, status=202)


@operation("POST", "/api/v1/jobs/{job_id}/log", summary="Append log parts", body=LogIn, params=JOB,
           auth="required", ok=(202, "Accepted: the parts are buffered durably and will be stored once each",
                                LogAck),
           errors=(404, 409, 413, 429),
           description="Keep every part until `persisted_through` reaches its number; resend what lies "
                       "beyond it after a 429 or 503 (wait Retry-After) or when it stops advancing.")
async def job_log_append(request: HttpRequest, job_id: int, call: Call) -> HttpResponse:
    # The hottest request there is: it runs on the event loop and leaves it only for what is not in memory or
    # Redis. A job this process has seen is checked against the token from memory (card.facts), and its card
    # (jobs/card.py) is read in the same Redis round trip that pushes the parts; otherwise the card is read,
    # or filled from the database, first.
    token = await arequire_token(request)
    facts = card.facts(job_id)
    job = None
    if facts is None or not permissions.token_may_report(token, queue=facts[0], owner=facts[1], name=facts[2]):
        job = await _reportable_card(token, job_id)
    log = call.body()
    sizes = [len(part.content.encode()) for part in log.parts]
    # The body is buffered as it came, unless a NUL had to be replaced (JSON can only spell it \u0000).
    body = request.body
    if b"\\u0000" in body:
        body = json.dumps({"parts": [p.model_dump() for p in log.parts]}).encode()
    channel = redis_channel(events.job_group(job_id))
    accepted = None
    if job is None and max(sizes) <= settings.LOG_PART_MAX_BYTES:
        try:
            pushed = await card.push(job_id, facts, log.attempt, body, sum(sizes), channel)
        except TRANSIENT_ERRORS:
            pushed = card.Pushed(None, None)  # the database tells the 503 what is stored
        job, accepted = pushed.card, pushed.accepted
        if pushed.full:
            _buffer_full(job)
    if job is None:  # no card (the script just looked), or Redis is away: the database
        job = await _reportable_card(token, job_id, read=False)
    if log.attempt is not None and log.attempt != job.attempt:
        job = await card.fill(job_id) or job  # the card may not have heard of a restart yet: ask the database
    attempt = _attempt(log.attempt, job)
    progress = {"cancel": job.cancel_requested, "persisted_through": job.log_persisted_through}
    for part, size in zip(log.parts, sizes, strict=True):
        if size > settings.LOG_PART_MAX_BYTES:
            raise ApiError(413, f"part {part.number} is {size} bytes; the limit is "
                                f"{settings.LOG_PART_MAX_BYTES} bytes per part", **progress)
    # The task enforces the cap exactly; this early check refuses what is certainly over it.
    refused, room = 0, settings.LOG_MAX_BYTES - job.log_bytes
    for size in sizes:
        if job.log_truncated or size > room:
            refused += 1
        room -= size
    # The whole batch goes on even when some is refused: the task stores what fits and marks the
    # log as truncated, so the stored log ends with a visible marker.
    if accepted is None and not job.log_truncated:
        try:
            accepted = await ingest.aaccept_parts(job.pk, attempt, body, size=sum(sizes),
                                                  stored_bytes=job.log_bytes, channel=channel)
        except ingest.BufferFull:
            _buffer_full(job)
        except TRANSIENT_ERRORS:
            raise Unavailable(**progress) from None
    then = None
    if accepted is not None:
        # The frame, if anyone watches: the parts are durable in the buffer and certain to be stored, so
        # viewers may see them now. This process's viewers get it beside the answer, the others after it.
        elsewhere = None
        if accepted.announced_at and accepted.listeners:
            elsewhere = events.announce_buffered_parts(job, attempt, log.parts, accepted.announced_at)

        async def then() -> None:
            """After the answer: the frame to the other processes' viewers, then the flush (the sweep
            reschedules one that is lost)."""
            if elsewhere is not None:
                await elsewhere()
            if accepted.token:
                await aenqueue_soon(tasks.flush_log_parts, job.pk, accepted.token)
    if refused:
        if then is not None:
            await then()
        raise ApiError(413, f"the log exceeds the {settings.LOG_MAX_BYTES}-byte limit for a job; "
                            f"{refused} part(s) refused and the log is truncated", **progress)
    return respond(progress, status=202, then=then)


async def _reportable_card(token: ApiToken, job_id: int, *, read: bool = True) -> card.JobCard:
    """The job's card, read from Redis (unless `read` is False: the caller knows there is none) or filled
    from the database, if the token may report for the job."""
    job = None
    if read:
        try:
            job = await card.read(job_id)
        except TRANSIENT_ERRORS:  # Redis is away: the database says what the 503 tells the worker
            job = None
    job = job or await card.fill(job_id)
    if job is None or not permissions.token_may_report(token, queue=job.queue, owner=job.owner, name=job.name):
        raise ApiError(404, f"job {job_id} does not exist")
    return job


def _buffer_full(job: card.JobCard) -> None:
    retry_after = {"Retry-After": str(settings.API_RETRY_AFTER_SECONDS)}
    raise ApiError(429, f"{settings.LOG_BUFFER_MAX_ITEMS} requests of this job are still waiting to be stored; "
                        "resend after Retry-After", retry_after, cancel=job.cancel_requested,
                   persisted_through=job.log_persisted_through)


@operation("GET", "/api/v1/jobs/{job_id}", summary="A job: state, exit code, attempt, times, log progress",
           params=JOB, auth="optional", ok=(200, "The job", JobOut), errors=(404,))
def job_detail(request: HttpRequest, job_id: int, call: Call) -> HttpResponse:
    return respond(_get_job_for_reader(request, job_id, reporters_too=True).as_api_dict())


@operation("GET", "/api/v1/jobs/{job_id}/log", summary="Log parts after a number, in order", params=JOB,
           query=LogQuery, auth="optional", ok=(200, "Parts", LogOut), errors=(404, 410))
def job_log(request: HttpRequest, job_id: int, call: Call) -> HttpResponse:
    job = _get_job_for_reader(request, job_id)
    query = call.query()
    attempt = _read_attempt(query.attempt, job)
    try:
        parts = logread.read_parts(job, attempt, query.after, query.limit + 1)
    except logread.LogUnavailable as e:
        raise ApiError(410, e.message, job_id=job.pk, attempt=attempt) from None
    more = len(parts) > query.limit
    earlier = attempt != job.attempt  # an earlier attempt is over: what is stored is all there is
    return respond({
        "job_id": job.pk,
        "attempt": attempt,
        "current_attempt": job.attempt,
        "parts": parts[: query.limit],
        "more": more,
        "persisted_through": parts[-1]["number"] if earlier and parts else job.log_persisted_through,
        "complete": (earlier or job.log_complete) and not more,
        "truncated": job.log_truncated and not earlier,
    })


def _read_attempt(attempt: int | None, job: Job) -> int:
    """`?attempt=N` reads an earlier attempt's log (they are all kept); the current one by default."""
    if attempt is None:
        return job.attempt
    if not 1 <= attempt <= job.attempt:
        raise ApiError(404, f"job {job.pk} has no attempt {attempt}")
    return attempt


ANSI_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
_CSI_START = re.compile(r"\x1b(?:\[[0-?]*[ -/]*)?")
_OSC_END = re.compile(r"\x07|\x1b\\")


def _undecided(buffer: str) -> int:
    """Where the escapes whose end has not arrived yet start (len(buffer) if none): what comes before is
    stripped exactly as it would be in the whole text."""
    cut = len(buffer)
    osc = buffer.rfind("\x1b]")
    if osc != -1 and not _OSC_END.search(buffer, osc + 2):
        cut = osc
    esc = buffer.rfind("\x1b")
    if esc != -1 and _CSI_START.fullmatch(buffer, esc):
        cut = min(cut, esc)
    return cut


def strip_ansi(pieces) -> Iterator[str]:
    """ANSI_ESCAPES removed from a stream of text pieces, the same as from their concatenation."""
    buffer = ""
    for piece in pieces:
        buffer += piece
        cut = _undecided(buffer)
        if cut:
            yield ANSI_ESCAPES.sub("", buffer[:cut])
            buffer = buffer[cut:]
    if buffer:
        yield ANSI_ESCAPES.sub("", buffer)


def _closing(pieces) -> Iterator[str]:
    """Close the reader when the response is closed, read to the end or not (a client that went away)."""
    try:
        yield from pieces
    finally:
        pieces.close()


async def _in_thread(chunks: Iterator[bytes]):
    """A blocking iterator served chunk by chunk under ASGI (the database is read in Django's sync thread)."""
    step = sync_to_async(next, thread_sensitive=True)
    try:
        while (chunk := await step(chunks, None)) is not None:
            yield chunk
    finally:
        await sync_to_async(chunks.close, thread_sensitive=True)()


def _batched(pieces, size: int = 64 * 1024) -> Iterator[bytes]:
    """Pieces joined into chunks of about `size`, encoded (fewer, larger writes to the client)."""
    batch, length = [], 0
    for piece in pieces:
        batch.append(piece)
        length += len(piece)
        if length >= size:
            yield "".join(batch).encode()
            batch, length = [], 0
    if batch:
        yield "".join(batch).encode()


@require_safe  # HEAD too: download tools ask for the size and type first
def job_log_txt(request: HttpRequest, job_id: int) -> HttpResponse:
    """The raw log: a page's download, not an API operation (a missing job is the HTML 404 page)."""
    try:
        job = _get_job_for_reader(request, job_id)
        raw = request.GET.get("attempt")
        if raw is not None and not re.fullmatch(r"[0-9]{1,10}", raw):
            return HttpResponse("'attempt' must be an integer", status=400, content_type="text/plain; charset=utf-8")
        attempt = _read_attempt(int(raw) if raw is not None else None, job)
    except ApiError as e:
        raise Http404(e.message) from None
    try:  # an archived log is opened and checked before the first byte goes out
        pieces = logread.open_text(job, attempt)
    except logread.LogUnavailable as e:
        return HttpResponse(e.message + "\n", status=410, content_type="text/plain; charset=utf-8")
    content = _closing(pieces)
    if request.GET.get("ansi") in ("0", "false", "no"):
        content = strip_ansi(content)
    body = _batched(content)
    if isinstance(request, ASGIRequest):  # else Django would read the whole iterator into memory first
        body = _in_thread(body)
    response = StreamingHttpResponse(body, content_type="text/plain; charset=utf-8")
    if request.GET.get("download"):
        response["Content-Disposition"] = f'attachment; filename="job-{job.pk}-attempt-{attempt}.log"'
    return response


@operation("POST", "/api/v1/jobs/{job_id}/restart", summary="Start the next attempt of a finished job",
           params=JOB, auth="required", ok=(202, "Restarted", RestartOut), errors=(403, 404, 409))
def job_restart(request: HttpRequest, job_id: int, call: Call) -> HttpResponse:
    job, token = _get_job_for_operator(request, job_id)
    if not services.job_restart(job=job, actor=token):
        raise ApiError(409, f"job {job_id} is still {job.state}; only a finished job can be restarted")
    return respond({"id": job.pk, "attempt": job.attempt, "state": job.state}, status=202)


@operation("POST", "/api/v1/jobs/{job_id}/cancel", summary="Ask the worker to cancel a running job", params=JOB,
           auth="required", ok=(202, "Cancel requested; the worker sees `cancel: true` in its next answer", CancelOut),
           errors=(403, 404, 409))
def job_cancel(request: HttpRequest, job_id: int, call: Call) -> HttpResponse:
    job, token = _get_job_for_operator(request, job_id)
    if not services.job_cancel(job=job, actor=token):
        raise ApiError(409, f"job {job_id} has already finished ({job.state})")
    return respond({"id": job.pk, "cancel_requested": True}, status=202)


_DOCUMENT: dict | None = None


@require_GET
def openapi(request: HttpRequest) -> HttpResponse:
    """The OpenAPI 3.1 document, built from the operations' own declarations."""
    global _DOCUMENT
    if _DOCUMENT is None:
        _DOCUMENT = openapi_document(
            title="buildboard worker API", version="1", error_model=ErrorOut,
            description="Workers report builds, job states and log parts; reports are ingested asynchronously "
                        "(202 Accepted) by Celery tasks. Tokens are minted with `python manage.py create_token "
                        "NAME`. Every error is JSON `{\"error\": ...}`; a 429 or 503 carries Retry-After.")
    return respond(_DOCUMENT)
