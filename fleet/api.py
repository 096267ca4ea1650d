"""The heartbeat endpoint: each worker says what it runs and how it is doing, and learns what staff want."""

import re

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from accounts import permissions
from accounts.tokens import require_token
from buildboard.lib.jsonapi import ApiError, api_view, field, integer, json_body, respond, text, timestamp

from . import services
from .models import WorkerState

WORKER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,254}$")
MAX_POOL_SIZE = 10_000
MAX_ERRORS_PER_HEARTBEAT = 100
MAX_ERROR_LENGTH = 4000
STATES = [s.value for s in WorkerState]


def parse_heartbeat(data: dict) -> tuple[dict, list[dict]]:
    """The heartbeat body, validated: (fields for the worker, its errors). Raises ApiError(400)."""
    beat = {
        "version": text(data, "version", max_length=64, blank=False),
        "backend": text(data, "backend", "", max_length=64),
        "host": text(data, "host", "", max_length=255),
        "queue": text(data, "queue", max_length=100, blank=False),
        "pool_size": integer(data, "pool_size", minimum=0, maximum=MAX_POOL_SIZE),
        "busy": integer(data, "busy", minimum=0, maximum=MAX_POOL_SIZE),
        "state": text(data, "state", max_length=16),
    }
    if beat["state"] not in STATES:
        raise ApiError(400, f"'state' must be one of {', '.join(STATES)}")
    if beat["busy"] > beat["pool_size"]:
        raise ApiError(400, f"'busy' ({beat['busy']}) cannot exceed 'pool_size' ({beat['pool_size']})")
    raw_errors = field(data, "errors", list, [])
    if len(raw_errors) > MAX_ERRORS_PER_HEARTBEAT:
        raise ApiError(400, f"at most {MAX_ERRORS_PER_HEARTBEAT} errors per heartbeat")
    errors = []
    for i, raw in enumerate(raw_errors):
        where = f"errors[{i}]."
        if not isinstance(raw, dict):
            raise ApiError(400, f"'errors[{i}]' must be an object with 'at' and 'message'")
        message = text(raw, "message", max_length=MAX_ERROR_LENGTH, where=where, blank=False)
        try:
            at = timestamp(raw, "at")
        except ApiError as e:
            raise ApiError(400, e.message.replace("'at'", f"'{where}at'", 1)) from None
        errors.append({"at": at, "message": message})
    return beat, errors


@csrf_exempt
@require_POST
@api_view
def worker_heartbeat(request: HttpRequest, name: str) -> HttpResponse:
    token = require_token(request)
    if not WORKER_NAME.match(name):
        raise ApiError(400, "the worker name must be 1-255 letters, digits or _ . : @ -, starting with a letter "
                            "or digit")
    beat, errors = parse_heartbeat(json_body(request))
    if not permissions.token_may_heartbeat(token, beat["queue"]):
        raise ApiError(403, f"this {token.kind} token may not heartbeat for queue {beat['queue']}")
    return respond(services.worker_heartbeat(name=name, beat=beat, errors=errors))
