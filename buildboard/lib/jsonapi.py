"""Small helpers for JSON APIs: parse a body, check fields, answer errors with a clear message."""

import json
from collections.abc import Callable
from datetime import datetime
from functools import wraps
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest, JsonResponse

MISSING = object()


class ApiError(Exception):
    def __init__(self, status: int, message: str, **extra: Any):
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra


def respond(data: Any, status: int = 200, **kwargs: Any) -> JsonResponse:
    return JsonResponse(data, status=status, encoder=DjangoJSONEncoder, safe=False, **kwargs)


def api_view(view: Callable) -> Callable:
    """Turn ApiError into a JSON error response."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any):
        try:
            return view(request, *args, **kwargs)
        except ApiError as e:
            response = respond({"error": e.message, **e.extra}, status=e.status)
            if e.status == 401:
                response["WWW-Authenticate"] = 'Bearer realm="buildboard"'
            return response

    return wrapper


def json_body(request: HttpRequest) -> dict:
    if request.content_type not in ("application/json", ""):
        raise ApiError(415, f"expected Content-Type application/json, got {request.content_type}")
    try:
        data = json.loads(request.body)
    except (ValueError, UnicodeDecodeError) as e:
        raise ApiError(400, f"malformed JSON: {e}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return data


_TYPE_NAMES = {str: "a string", int: "an integer", bool: "a boolean", dict: "an object", list: "an array"}


def field(data: dict, name: str, kind: type, default: Any = MISSING, where: str = "") -> Any:
    """data[name], checked to be of `kind`; required unless a default is given (None allowed then)."""
    label = f"{where}{name}"
    if name not in data or (data[name] is None and default is not MISSING):
        if default is MISSING:
            raise ApiError(400, f"'{label}' is required")
        return default
    value = data[name]
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if not ok:
        raise ApiError(400, f"'{label}' must be {_TYPE_NAMES.get(kind, kind.__name__)}")
    return value


def text(data: dict, name: str, default: Any = MISSING, max_length: int = 255, where: str = "",
         blank: bool = True) -> str:
    value = field(data, name, str, default, where)
    if value is default:
        return value
    if len(value) > max_length:
        raise ApiError(400, f"'{where}{name}' is longer than {max_length} characters")
    if not blank and not value.strip():
        raise ApiError(400, f"'{where}{name}' must not be blank")
    return value


def integer(data: dict, name: str, default: Any = MISSING, minimum: int | None = None,
            maximum: int | None = None, where: str = "") -> int:
    value = field(data, name, int, default, where)
    if value is default:
        return value
    if minimum is not None and value < minimum:
        raise ApiError(400, f"'{where}{name}' must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise ApiError(400, f"'{where}{name}' must be at most {maximum}")
    return value


def timestamp(data: dict, name: str, default: Any = MISSING) -> datetime:
    value = field(data, name, str, default)
    if value is default:
        return value
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ApiError(400, f"'{name}' must be an RFC 3339 timestamp, like 2017-02-05T21:56:00Z") from None
    if parsed.tzinfo is None:
        raise ApiError(400, f"'{name}' must include a time zone offset, like Z or +00:00")
    return parsed
