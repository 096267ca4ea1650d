"""The heartbeat endpoint: each worker says what it runs and how it is doing, and learns what staff want."""

from datetime import datetime
from typing import Annotated, Literal

from django.http import HttpRequest, HttpResponse
from pydantic import BaseModel, Field

from accounts import permissions
from accounts.tokens import require_token
from buildboard.lib.jsonapi import ApiError, ApiModel, Call, Integer, Name, Text, Timestamp, operation, respond

from . import rollouts, services
from .models import Rollout

MAX_POOL_SIZE = 10_000
MAX_ERRORS_PER_HEARTBEAT = 100
MAX_ERROR_LENGTH = 4000
# registry/repository:tag, the registry optional (Docker Hub): travisci/worker:v2.5.0,
# quay.io:443/travis/worker:v2.6.2-rc.1. A digest (@sha256:...) may follow the tag.
IMAGE_REF = (r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}[A-Za-z0-9])?(?::[0-9]{1,5})?/)?"
             r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
             r":[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}(?:@sha256:[0-9a-f]{64})?")
ImageRef = Name(IMAGE_REF, 255, what="an image reference registry/repository:tag, e.g. travisci/worker:v2.5.0")
WorkerName = Name(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,254}", 255,
                  what="1-255 letters, digits or _ . : @ -, starting with a letter or digit")


class WorkerErrorIn(ApiModel):
    at: Timestamp
    message: Text(MAX_ERROR_LENGTH, min_length=1, non_blank=True)


class HeartbeatIn(ApiModel):
    version: Text(64, min_length=1, non_blank=True)
    backend: Text(64) = ""
    host: Text(255) = ""
    queue: Text(100, min_length=1, non_blank=True)
    pool_size: Integer(0, MAX_POOL_SIZE)
    busy: Integer(0, MAX_POOL_SIZE, description="At most pool_size.")
    state: Literal["starting", "in_service", "draining", "stopped"]
    errors: Annotated[list[WorkerErrorIn], Field(max_length=MAX_ERRORS_PER_HEARTBEAT)] = []
    image: ImageRef | None = Field(None, description="The image the instance runs or is pulling, with its tag; "
                                                     "makes rollout preflight and image-pull errors precise.")


class HeartbeatOut(BaseModel):
    desired_version: str | None = Field(description="The version staff want this queue to run; null if none.")
    drain: bool = Field(description="Finish running jobs, take no new ones, then stop.")


def parse_heartbeat(data: HeartbeatIn) -> tuple[dict, list[dict]]:
    """The validated heartbeat as (fields for the worker, its errors)."""
    beat = data.model_dump(exclude={"errors"})
    beat["image"] = beat["image"] or ""
    return beat, [{"at": e.at, "message": e.message} for e in data.errors]


@operation("POST", "/api/v1/workers/{name}/heartbeat", params={"name": WorkerName}, body=HeartbeatIn,
           auth="required", errors=(403, 409),
           ok=(200, "Recorded; the answer is what staff want of this worker", HeartbeatOut),
           summary="A worker's heartbeat: what it runs and how it is doing; answers what staff want of it",
           description="Send every 30 s or so; an instance silent for FLEET_HEARTBEAT_TIMEOUT seconds (90) shows "
                       "as silent and stops counting toward its queue's capacity. Errors are grouped by a signature "
                       "with numbers, hashes, ids and image tags stripped; resending an error (same time) counts "
                       "it once. `busy` may not exceed `pool_size` (else 409).")
def worker_heartbeat(request: HttpRequest, name: str, call: Call) -> HttpResponse:
    token = require_token(request)
    beat, errors = parse_heartbeat(call.body())
    if beat["busy"] > beat["pool_size"]:  # no JSON Schema can say so: a conflict between the two values
        raise ApiError(409, f"'busy' ({beat['busy']}) cannot exceed 'pool_size' ({beat['pool_size']})")
    if not permissions.token_may_heartbeat(token, beat["queue"]):
        raise ApiError(403, f"this {token.kind} token may not heartbeat for queue {beat['queue']}")
    return respond(services.worker_heartbeat(name=name, beat=beat, errors=errors))


# --- staged rollouts (fleet/rollouts.py) -----------------------------------------------------------------

QueueName = Text(100, min_length=1, non_blank=True)
MAX_STAGES = 20


class RolloutIn(ApiModel):
    version: Text(64, min_length=1, non_blank=True)
    stages: Annotated[list[Text(8, min_length=1)], Field(max_length=MAX_STAGES)] | None = Field(
        None, description='Instances ("1") then percentages ("10%"), increasing, ending at "100%". Default: '
                          '["1", "10%", "50%", "100%"].')
    soak_minutes: Annotated[float, Field(le=10080)] | None = Field(
        None, description="How long each stage runs before the next (more than 0). Default ROLLOUT_SOAK_MINUTES.")
    confirm: bool = Field(False, description="Start despite preflight warnings (the answer to a 409 lists them).")


class RolloutEventOut(BaseModel):
    at: datetime
    kind: str
    stage: int
    actor: str
    message: str


class RolloutOut(BaseModel):
    id: int
    queue: str
    version: str
    previous_version: str
    state: Literal["running", "paused", "halted", "aborted", "completed"]
    stages: list[str]
    stage: int = Field(description="Index into stages of the current (or last) stage.")
    stage_label: str
    soak_minutes: float
    stage_started_at: datetime
    soak_ends_at: datetime
    created_at: datetime
    created_by: str | None
    finished_at: datetime | None
    reason: str = Field(description="Why it halted or was aborted.")
    instances: int = Field(description="Instances of the queue heard from lately.")
    instances_on_version: list[str] = Field(description="Those the plan tells to run the new version now.")
    last_check_at: datetime | None
    gates: dict = Field(description="The latest gate results, per rule: fired, and the findings.")
    alert_id: int | None
    url: str = Field(description="The rollout's timeline page (staff).")
    events: list[RolloutEventOut]
    warnings: list[str] = Field([], description="Preflight warnings confirmed when it started.")


def _operator(request: HttpRequest):
    """The staff user behind a personal token; other tokens get 403."""
    token = require_token(request)
    if not permissions.may_operate_fleet(token):
        raise ApiError(403, f"this {token.kind} token may not operate the fleet; use a staff user's personal token")
    return token.user


def _reader(request: HttpRequest) -> None:
    """Staff, by personal token or signed in."""
    if "Authorization" in request.headers or not request.user.is_authenticated:
        _operator(request)
    elif not permissions.may_operate_fleet(request.user):
        raise ApiError(403, "rollouts are for staff")


def _answer(rollout: Rollout, status: int = 200) -> HttpResponse:
    data = rollouts.rollout_data(rollout)
    started = rollout.events.filter(kind="started").first()
    data["warnings"] = started.evidence.get("warnings", []) if started else []
    return respond(data, status=status)


def _refused(e: rollouts.RolloutRefused) -> ApiError:
    return ApiError(e.status, e.message, **e.extra)


def _rollout_of(queue: str, rollout_id: int) -> Rollout:
    rollout = Rollout.objects.filter(pk=rollout_id, queue=queue).first()
    if rollout is None:
        raise ApiError(404, f"rollout {rollout_id} of queue {queue} does not exist")
    return rollout


@operation("POST", "/api/v1/queues/{queue}/rollouts", params={"queue": QueueName}, body=RolloutIn,
           auth="required", errors=(403, 409), ok=(201, "Started: the plan at its first stage", RolloutOut),
           summary="Start a staged rollout of a worker version on a queue (staff)",
           description="Stages run one after another, each soaking `soak_minutes`; the heartbeat answer's "
                       "`desired_version` tells each instance what to run. Gates compare the new version with the "
                       "previous one and halt and roll back on any finding. 409: the queue already runs the "
                       "version, another rollout is active, or preflight warns (its `warnings` listed; resend with "
                       "`confirm`). Staff personal tokens only.")
def rollout_create(request: HttpRequest, queue: str, call: Call) -> HttpResponse:
    user = _operator(request)
    data = call.body()
    try:
        rollout = rollouts.rollout_start(queue=queue, version=data.version, user=user, stages=data.stages,
                                         soak_minutes=data.soak_minutes, confirm=data.confirm)
    except rollouts.RolloutRefused as e:
        raise _refused(e) from None
    return _answer(rollout, 201)


@operation("GET", "/api/v1/queues/{queue}/rollouts/current", params={"queue": QueueName}, auth="required",
           errors=(403, 404), ok=(200, "The active rollout, else the latest one", RolloutOut),
           summary="A queue's current rollout: plan, stage, gate results and decisions (staff)")
def rollout_current(request: HttpRequest, queue: str, call: Call) -> HttpResponse:
    _reader(request)
    rollout = Rollout.objects.active().filter(queue=queue).first() or Rollout.objects.filter(queue=queue).first()
    if rollout is None:
        raise ApiError(404, f"queue {queue} has had no rollout")
    return _answer(rollout)


def _action(name: str, verb: str, service, description: str):
    @operation("POST", f"/api/v1/queues/{{queue}}/rollouts/{{rollout_id}}/{name}",
               params={"queue": QueueName, "rollout_id": Integer(0, 2**63 - 1)}, auth="required",
               errors=(403, 404, 409),
               ok=(200, "Done: the rollout as it is now", RolloutOut),
               summary=f"{verb} a rollout (staff)", description=description)
    def view(request: HttpRequest, queue: str, rollout_id: int, call: Call) -> HttpResponse:
        user = _operator(request)
        rollout = _rollout_of(queue, rollout_id)
        try:
            service(rollout=rollout, user=user)
        except rollouts.RolloutRefused as e:
            raise _refused(e) from None
        rollout.refresh_from_db()
        return _answer(rollout)

    view.__name__ = f"rollout_{name}"
    return view


rollout_pause = _action("pause", "Pause", rollouts.rollout_pause,
                        "A running rollout stays at its stage; gates keep checking. 409 unless running.")
rollout_resume = _action("resume", "Resume", rollouts.rollout_resume,
                         "A paused rollout runs on; the pause does not count toward the soak. 409 unless paused.")
rollout_promote = _action("promote", "Promote", rollouts.rollout_promote,
                          "Skip the rest of the stage's soak: the gates are checked first and still halt a bad "
                          "version. 409 unless running (a halted rollout cannot be promoted).")
rollout_abort = _action("abort", "Abort", rollouts.rollout_abort,
                        "Stop and roll back to the previous version. 409 if it already finished.")
