"""The worker API: workers report builds, job states and log parts; anyone allowed reads them back.

Views validate synchronously and hand all writing of reports to Celery (see tasks.py)."""

import re

from django.conf import settings
from django.db import IntegrityError
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST, require_safe

from accounts import permissions
from accounts.models import ApiToken, TokenKind
from accounts.tokens import require_token, token_from
from buildboard.lib.jsonapi import ApiError, api_view, field, integer, json_body, respond, text, timestamp
from buildboard.lib.publish import enqueue

from . import events, ingest, services, tasks
from .models import Job, create_build
from .openapi import OPENAPI
from .states import parse_state

REPOSITORY_SLUG = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
MAX_JOBS_PER_BUILD = 500
MAX_PARTS_PER_REQUEST = 5000


def _require_build_scope(token: ApiToken, repository: str) -> None:
    owner, _, name = repository.partition("/")
    if not permissions.token_may_create_build(token, owner, name):
        raise ApiError(403, f"this {token.kind} token may not create builds in {repository}")


def _get_job_for_worker(request: HttpRequest, job_id: int, *fields: str) -> Job:
    """A job the token may report for (its queue, or its repositories); others do not exist for it."""
    token = require_token(request)
    jobs = Job.objects.only("id", "attempt", "cancel_requested", "queue", *fields)
    if token.kind == TokenKind.BUILD:  # only build tokens need the repository; workers go by the queue
        jobs = jobs.select_related("build__repository").only(
            "id", "attempt", "cancel_requested", "queue", "build__repository__owner", "build__repository__name",
            *fields)
    try:  # get(), not first(): no ORDER BY to compile and run on the hottest path
        job = jobs.get(pk=job_id)
    except Job.DoesNotExist:
        raise ApiError(404, f"job {job_id} does not exist") from None
    repository = job.build.repository if token.kind == TokenKind.BUILD else None
    if not permissions.token_may_report(token, queue=job.queue, owner=repository.owner if repository else "",
                                        name=repository.name if repository else ""):
        raise ApiError(404, f"job {job_id} does not exist")
    return job


def _get_job_for_reader(request: HttpRequest, job_id: int) -> Job:
    """A job the caller may read: its user may (public, a role, staff), or its token may. Else 404."""
    job = Job.objects.select_related("build__repository").filter(pk=job_id).first()
    if job is None:
        raise ApiError(404, f"job {job_id} does not exist")
    repository = job.build.repository
    if permissions.can_read(request.user, repository):
        return job
    if "Authorization" in request.headers:
        token = token_from(request)
        if token is not None and permissions.token_may_read(token, repository):
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


def _attempt(data: dict, job: Job) -> int:
    attempt = integer(data, "attempt", None, minimum=1)
    if attempt is None:
        return job.attempt
    if attempt != job.attempt:
        raise ApiError(409, f"attempt {attempt} is not the job's current attempt ({job.attempt})",
                       current_attempt=job.attempt)
    return attempt


@csrf_exempt
@require_POST
@api_view
def builds_create(request: HttpRequest) -> HttpResponse:
    token = require_token(request)
    data = json_body(request)
    repository = text(data, "repository", max_length=201)
    if not REPOSITORY_SLUG.match(repository):
        raise ApiError(400, "'repository' must look like owner/name")
    _require_build_scope(token, repository)
    jobs = field(data, "jobs", list)
    if not jobs:
        raise ApiError(400, "'jobs' must list at least one job")
    if len(jobs) > MAX_JOBS_PER_BUILD:
        raise ApiError(400, f"a build may have at most {MAX_JOBS_PER_BUILD} jobs")
    job_specs = []
    for i, spec in enumerate(jobs):
        where = f"jobs[{i}]."
        if not isinstance(spec, dict):
            raise ApiError(400, f"'jobs[{i}]' must be an object")
        job_specs.append({
            "number": text(spec, "number", None, max_length=32, where=where, blank=False),
            "config": field(spec, "config", dict, {}, where),
            "queue": text(spec, "queue", "builds.linux", max_length=100, where=where, blank=False),
            "allow_failure": field(spec, "allow_failure", bool, False, where),
        })
    numbers = [s["number"] for s in job_specs if s["number"]]
    if len(numbers) != len(set(numbers)):
        raise ApiError(400, "job numbers must be unique within a build")
    try:
        build = create_build(
            repository=repository,
            branch=text(data, "branch", blank=False),
            commit=text(data, "commit", max_length=64, blank=False),
            message=text(data, "message", "", max_length=10_000),
            author=text(data, "author", ""),
            event=text(data, "event", "push", max_length=32),
            number=integer(data, "number", None, minimum=1, maximum=2**31 - 1),
            jobs=job_specs,
        )
    except IntegrityError:
        raise ApiError(409, f"build number {data.get('number')} already exists in {repository}") from None
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


@csrf_exempt
@require_POST
@api_view
def job_state(request: HttpRequest, job_id: int) -> HttpResponse:
    job = _get_job_for_worker(request, job_id)
    data = json_body(request)
    state = parse_state(text(data, "state", max_length=32))
    if state is None:
        raise ApiError(400, "'state' must be one of received, started, passed, failed, errored, canceled")
    at = timestamp(data, "at", None) or timezone.now()
    report = {
        "worker": text(data, "worker", ""),
        "worker_version": text(data, "worker_version", "", max_length=64),
        "exit_code": integer(data, "exit_code", None, minimum=-(2**31), maximum=2**31 - 1),
    }
    attempt = _attempt(data, job)
    enqueue(tasks.apply_job_state, job.pk, attempt, state.value, at.isoformat(), **report)
    return respond({"cancel": job.cancel_requested}, status=202)


@csrf_exempt
@require_POST
@api_view
def job_log_append(request: HttpRequest, job_id: int) -> HttpResponse:
    job = _get_job_for_worker(request, job_id, "log_bytes", "log_truncated", "log_persisted_through")
    data = json_body(request)
    attempt = _attempt(data, job)
    raw_parts = field(data, "parts", list)
    if not raw_parts:
        raise ApiError(400, "'parts' must list at least one part")
    if len(raw_parts) > MAX_PARTS_PER_REQUEST:
        raise ApiError(400, f"at most {MAX_PARTS_PER_REQUEST} parts per request")
    sizes = []
    for i, raw in enumerate(raw_parts):
        where = f"parts[{i}]."
        if not isinstance(raw, dict):
            raise ApiError(400, f"'parts[{i}]' must be an object")
        content = field(raw, "content", str, where=where)
        size = len(content.encode())
        if size > settings.LOG_PART_MAX_BYTES:
            raise ApiError(413, f"part {raw.get('number')} is {size} bytes; the limit is "
                                f"{settings.LOG_PART_MAX_BYTES} bytes per part")
        integer(raw, "number", minimum=0, maximum=2**31 - 1, where=where)
        field(raw, "final", bool, False, where)
        sizes.append(size)
    # The task enforces the cap exactly; this early check refuses what is certainly over it.
    refused, room = 0, settings.LOG_MAX_BYTES - job.log_bytes
    for size in sizes:
        if job.log_truncated or size > room:
            refused += 1
        room -= size
    # The whole batch goes on even when some is refused: the task stores what fits and marks the
    # log as truncated, so the stored log ends with a visible marker.
    if not job.log_truncated:
        token = ingest.buffer_parts(job.pk, attempt, request.body)
        if token:
            enqueue(tasks.flush_log_parts, job.pk, token)
    body = {"cancel": job.cancel_requested, "persisted_through": job.log_persisted_through}
    if refused:
        raise ApiError(413, f"the log exceeds the {settings.LOG_MAX_BYTES}-byte limit for a job; "
                            f"{refused} part(s) refused and the log is truncated", **body)
    return respond(body, status=202)


@require_GET
@api_view
def job_detail(request: HttpRequest, job_id: int) -> HttpResponse:
    return respond(_get_job_for_reader(request, job_id).as_api_dict())


@require_GET
@api_view
def job_log(request: HttpRequest, job_id: int) -> HttpResponse:
    job = _get_job_for_reader(request, job_id)
    try:
        after = int(request.GET.get("after", -1))
        limit = min(int(request.GET.get("limit", 1000)), 5000)
    except ValueError:
        raise ApiError(400, "'after' and 'limit' must be integers") from None
    attempt = _read_attempt(request, job)
    parts = list(job.log_parts(after, attempt=attempt).values("number", "content", "final", "created_at")[: limit + 1])
    more = len(parts) > limit
    earlier = attempt != job.attempt  # an earlier attempt is over: what is stored is all there is
    return respond({
        "job_id": job.pk,
        "attempt": attempt,
        "current_attempt": job.attempt,
        "parts": [{**p, "at": p.pop("created_at")} for p in parts[:limit]],
        "more": more,
        "persisted_through": parts[-1]["number"] if earlier and parts else job.log_persisted_through,
        "complete": (earlier or job.log_complete) and not more,
        "truncated": job.log_truncated and not earlier,
    })


def _read_attempt(request: HttpRequest, job: Job) -> int:
    """`?attempt=N` reads an earlier attempt's log (they are all kept); the current one by default."""
    try:
        attempt = int(request.GET.get("attempt", job.attempt))
    except ValueError:
        raise ApiError(400, "'attempt' must be an integer") from None
    if not 1 <= attempt <= job.attempt:
        raise ApiError(404, f"job {job.pk} has no attempt {attempt}")
    return attempt


ANSI_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")


@require_safe  # HEAD too: download tools ask for the size and type first
@api_view
def job_log_txt(request: HttpRequest, job_id: int) -> HttpResponse:
    job = _get_job_for_reader(request, job_id)
    attempt = _read_attempt(request, job)
    content = job.log_text(attempt)
    if request.GET.get("ansi") in ("0", "false", "no"):
        content = ANSI_ESCAPES.sub("", content)
    response = HttpResponse(content, content_type="text/plain; charset=utf-8")
    if request.GET.get("download"):
        response["Content-Disposition"] = f'attachment; filename="job-{job.pk}-attempt-{attempt}.log"'
    return response


@csrf_exempt
@require_POST
@api_view
def job_restart(request: HttpRequest, job_id: int) -> HttpResponse:
    job, token = _get_job_for_operator(request, job_id)
    if not services.job_restart(job=job, actor=token):
        raise ApiError(409, f"job {job_id} is still {job.state}; only a finished job can be restarted")
    return respond({"id": job.pk, "attempt": job.attempt, "state": job.state}, status=202)


@csrf_exempt
@require_POST
@api_view
def job_cancel(request: HttpRequest, job_id: int) -> HttpResponse:
    job, token = _get_job_for_operator(request, job_id)
    if not services.job_cancel(job=job, actor=token):
        raise ApiError(409, f"job {job_id} has already finished ({job.state})")
    return respond({"id": job.pk, "cancel_requested": True}, status=202)


@require_GET
def openapi(request: HttpRequest) -> HttpResponse:
    return respond(OPENAPI)


@csrf_exempt
def job_log_dispatch(request: HttpRequest, job_id: int) -> HttpResponse:
    """GET reads the log, POST appends to it: one URL, as the API document describes."""
    if request.method == "POST":
        return job_log_append(request, job_id)
    return job_log(request, job_id)
