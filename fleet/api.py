"""The heartbeat endpoint: each worker says what it runs and how it is doing, and learns what staff want."""

from typing import Annotated, Literal

from django.http import HttpRequest, HttpResponse
from pydantic import BaseModel, Field

from accounts import permissions
from accounts.tokens import require_token
from buildboard.lib.jsonapi import ApiError, ApiModel, Call, Integer, Name, Text, Timestamp, operation, respond

from . import services

MAX_POOL_SIZE = 10_000
MAX_ERRORS_PER_HEARTBEAT = 100
MAX_ERROR_LENGTH = 4000
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


class HeartbeatOut(BaseModel):
    desired_version: str | None = Field(description="The version staff want this queue to run; null if none.")
    drain: bool = Field(description="Finish running jobs, take no new ones, then stop.")


def parse_heartbeat(data: HeartbeatIn) -> tuple[dict, list[dict]]:
    """The validated heartbeat as (fields for the worker, its errors)."""
    beat = data.model_dump(exclude={"errors"})
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
