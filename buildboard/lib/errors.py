"""How failures reach clients: JSON under /api/, 503 with Retry-After while Redis or PostgreSQL is out.

Every /api/ answer is JSON, whatever made it: a view's ApiError, Django's 404 or 405, an exception in
a view or a middleware. An error that a retry can cure (the database or Redis unreachable, a pool or
publish timeout) is a 503 with Retry-After, on pages too; anything else is a 500 with a short message."""

import concurrent.futures
import json
import logging
import re
from collections.abc import Callable

import kombu.exceptions
import redis.exceptions
from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.views import defaults

log = logging.getLogger(__name__)

# Errors that say "not now" rather than "never": retrying the same request later may well succeed.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError,  # includes psycopg's pool timeout and a server that went away mid-query
    InterfaceError,
    redis.exceptions.ConnectionError,  # includes BusyLoadingError while Redis replays its AOF
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,
    kombu.exceptions.OperationalError,
    concurrent.futures.TimeoutError,
)

UNAVAILABLE = "the service is briefly unavailable (its database or Redis cannot be reached); retry after Retry-After"


def is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def json_error(status: int, message: str, headers: dict | None = None, **extra) -> JsonResponse:
    response = JsonResponse({"error": message, **extra}, status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def unavailable(**extra) -> JsonResponse:
    return json_error(503, UNAVAILABLE, {"Retry-After": str(settings.API_RETRY_AFTER_SECONDS)}, **extra)


def _exception_response(request: HttpRequest, exc: BaseException) -> HttpResponse:
    transient = isinstance(exc, TRANSIENT_ERRORS)
    if transient:
        log.warning("answering 503 to %s %s: %r", request.method, request.path, exc)
    else:
        log.error("unhandled error in %s %s", request.method, request.path, exc_info=exc)
    if is_api(request):
        return unavailable() if transient else json_error(500, "internal error; it has been logged")
    if transient:
        response = TemplateResponse(request, "503.html", status=503)
        response["Retry-After"] = str(settings.API_RETRY_AFTER_SECONDS)
        return response.render()
    return defaults.server_error(request)


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: called inside Django's except block, so the exception is at hand."""
    import sys

    exc = sys.exc_info()[1]
    return _exception_response(request, exc or RuntimeError("unknown error"))


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if is_api(request):
        return json_error(404, f"no such resource: {request.path}")
    return defaults.page_not_found(request, exception)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    if is_api(request):
        return json_error(400, "bad request")
    return defaults.bad_request(request, exception)


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    if is_api(request):
        return json_error(403, "forbidden")
    return defaults.permission_denied(request, exception)


def _as_json(response: HttpResponse) -> HttpResponse:
    """An HTML (or empty) error answer under /api/, rewritten as {"error": ...} with its headers kept."""
    message = response.reason_phrase.lower() if response.reason_phrase else "error"
    if response.status_code == 405 and response.has_header("Allow"):
        message = f"method not allowed; this resource answers {response['Allow']}"
    body = json.dumps({"error": message}).encode()
    response.content = body
    response["Content-Type"] = "application/json"
    response["Content-Length"] = str(len(body))
    return response


class _Middleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable):
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)


class JsonErrorsMiddleware(_Middleware):
    """Outermost after SecurityMiddleware: no /api/ answer leaves as HTML, and a view's transient
    failure is a 503 with Retry-After rather than a 500."""

    def __call__(self, request: HttpRequest):
        if self.is_async:
            return self._acall(request)
        return self._finish(request, self.get_response(request))

    async def _acall(self, request: HttpRequest):
        return self._finish(request, await self.get_response(request))

    @staticmethod
    def _finish(request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if is_api(request) and response.status_code >= 400 and not response.get("Content-Type", "").startswith(
                "application/json") and not response.streaming:
            return _as_json(response)
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if is_api(request) or isinstance(exception, TRANSIENT_ERRORS):
            return _exception_response(request, exception)
        return None


# NUL cannot be stored by PostgreSQL and lone surrogates cannot be encoded: neither belongs in an address.
_POISON = re.compile("[\x00\ud800-\udfff]")


def poison(value: str) -> str | None:
    """Describe a NUL or a lone surrogate in `value`, or None if it has neither."""
    if value.isascii() and "\x00" not in value:  # most text, and most logs: two scans in C, no regex
        return None
    found = _POISON.search(value)
    if found is None:
        return None
    return "NUL (\\u0000)" if found.group() == "\x00" else f"a lone surrogate (\\u{ord(found.group()):04x})"


class RequestHygieneMiddleware(_Middleware):
    """Refuse a NUL or lone surrogate in the path or query string with a 400, before any view can pass
    it to the database (PostgreSQL refuses NUL in text with an error that would otherwise be a 500)."""

    def __call__(self, request: HttpRequest):
        refused = self._check(request)
        if self.is_async:
            return self._acall(request, refused)
        return refused or self.get_response(request)

    async def _acall(self, request: HttpRequest, refused: HttpResponse | None):
        return refused or await self.get_response(request)

    @staticmethod
    def _check(request: HttpRequest) -> HttpResponse | None:
        what = poison(request.path)
        where = "the path"
        if what is None:
            for key, values in request.GET.lists():
                what = poison(key) or next((p for p in map(poison, values) if p), None)
                if what:
                    where = f"query parameter '{key}'" if poison(key) is None else "a query parameter name"
                    break
        if what is None:
            return None
        message = f"{where} must not contain {what}"
        if is_api(request):
            return json_error(400, message)
        return HttpResponse(message, status=400, content_type="text/plain; charset=utf-8")
