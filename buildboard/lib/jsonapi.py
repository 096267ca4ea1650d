"""JSON APIs declared once: pydantic models validate each request and describe it in the published OpenAPI.

A view declares its operation with @operation: method, path, the body and query models, the answers it
gives and the errors it may answer with. The view calls `call.body()` / `call.query()` for validated
models (after its own authorization, so an anonymous caller learns nothing from validation messages);
ApiError becomes a JSON answer; a transient failure of the database or Redis becomes a 503 with
Retry-After. openapi_document() is built from the same registrations, so what is validated is what is
published and the two cannot drift (healthchecks validates its API with pydantic the same way).

Field types: Text() refuses NUL and lone surrogates in every string, Name() is matched whole with
re.fullmatch, Integer() takes JSON integers (and integral floats, which JSON Schema calls integers) but
never strings or booleans, and every model is strict, so the schema's types are exactly what is accepted."""

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import wraps
from inspect import iscoroutinefunction
from typing import Annotated, Any, get_args, get_origin

from annotated_types import Ge, Le
from asgiref.sync import async_to_sync
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
)
from pydantic.json_schema import models_json_schema

from .errors import TRANSIENT_ERRORS, json_error, poison, unavailable

log = logging.getLogger(__name__)

MAX_JSON_DEPTH = 32


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None, **extra: Any):
        super().__init__(message)
        self.status, self.message, self.headers, self.extra = status, message, headers or {}, extra

    def response(self) -> JsonResponse:
        response = json_error(self.status, self.message, self.headers, **self.extra)
        if self.status == 401:
            response["WWW-Authenticate"] = 'Bearer realm="buildboard"'
        return response


class Unavailable(ApiError):
    """503 with Retry-After, and what the client may need to resend (e.g. persisted_through)."""

    def __init__(self, **extra: Any):
        super().__init__(503, "", **extra)

    def response(self) -> JsonResponse:
        return unavailable(**self.extra)


def respond(data: Any, status: int = 200, *, then: Callable[[], Awaitable[None]] | None = None,
            **kwargs: Any) -> JsonResponse:
    """A JSON answer. `then`, a coroutine function, runs once the answer has been sent (see AnswerThen)."""
    if then is not None:
        return AnswerThen(data, then=then, status=status, encoder=DjangoJSONEncoder, safe=False, **kwargs)
    return JsonResponse(data, status=status, encoder=DjangoJSONEncoder, safe=False, **kwargs)


class AnswerThen(JsonResponse):
    """An answer with work to do after it is sent: every Django handler closes a response once its bytes are
    out, and close() starts `then`. On the server's event loop (the log POST) it becomes a task, so the
    worker's answer does not wait for it; elsewhere (a sync handler, the test client) it runs before
    close() returns. Its failures are logged: it may only hurry along work that is already durable."""

    def __init__(self, *args: Any, then: Callable[[], Awaitable[None]], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._then: Callable[[], Awaitable[None]] | None = then
        self.after: asyncio.Task | None = None  # on an event loop, once closed: the task doing `then`

    def close(self) -> None:
        super().close()
        then, self._then = self._then, None
        if then is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            async_to_sync(_logged)(then)
            return
        task = self.after = loop.create_task(_logged(then))
        _after_answers.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(_after_answers.discard)


_after_answers: set[asyncio.Task] = set()


async def _logged(then: Callable[[], Awaitable[None]]) -> None:
    try:
        await then()
    except Exception:
        log.exception("work after an answer failed")


class ApiModel(BaseModel):
    """Strict: a string is never read as a number, a number never as a boolean. Unknown fields are ignored."""

    model_config = ConfigDict(strict=True)


# --- field types ----------------------------------------------------------------------------------


def _refuse_poison(value: str) -> str:
    what = poison(value)
    if what:
        raise ValueError(f"must not contain {what}")
    return value


def _integral(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)  # JSON Schema's "integer" includes 1.0
    return value


# Published patterns, and the very ones validation searches with (JSON Schema's semantics: re.search).
NO_NUL = r"^[^\u0000]*$"
# "Not blank": at least one character that is neither an ASCII space or control nor a C1 control. Spelled
# as explicit ranges, since engines disagree on what `\s` covers (U+001F is space to Python, not to others).
NON_BLANK = r"^[^\u0000]*[^\u0000-\u0020\u007f-\u009f][^\u0000]*$"


def Text(max_length: int, *, min_length: int = 0, non_blank: bool = False, description: str | None = None) -> Any:
    """A string of at most max_length characters without NUL or lone surrogates (and not only spaces)."""
    pattern = NON_BLANK if non_blank else NO_NUL
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        _refuse_poison(value)
        if not compiled.search(value):
            raise ValueError("must not be blank (only spaces or control characters)")
        return value

    return Annotated[str, Field(min_length=min_length, max_length=max_length, description=description,
                                json_schema_extra={"pattern": pattern}), AfterValidator(check)]


def Name(regex: str, max_length: int, *, what: str, description: str | None = None,
         not_pattern: str | None = None, not_what: str = "a reserved name") -> Any:
    """A name matched whole against `regex`, and, with `not_pattern`, refused where that pattern is found
    (reserved names). Published anchored, with a look-ahead so that `$` cannot match before a final
    newline: searching with the published pattern is re.fullmatch with `regex`."""
    pattern = f"^(?:{regex})(?!\\n)$"
    compiled = re.compile(pattern)
    refused = re.compile(not_pattern) if not_pattern else None
    schema: dict[str, Any] = {"pattern": pattern}
    if not_pattern:
        schema["not"] = {"pattern": not_pattern}

    def check(value: str) -> str:
        _refuse_poison(value)
        if not compiled.search(value):
            raise ValueError(f"must be {what}")
        if refused and refused.search(value):
            raise ValueError(f"is {not_what}")
        return value

    return Annotated[str, Field(min_length=1, max_length=max_length, description=description,
                                json_schema_extra=schema), AfterValidator(check)]


def Integer(minimum: int | None = None, maximum: int | None = None, description: str | None = None) -> Any:
    constraints = [c for c in (Ge(minimum) if minimum is not None else None,
                               Le(maximum) if maximum is not None else None) if c is not None]
    return Annotated[int, *constraints, Field(description=description), BeforeValidator(_integral)]


RFC3339 = re.compile(r"\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(?:\.\d+)?(?:[Zz]|[+-]\d\d:\d\d)", re.ASCII)
_LOCAL_TIME = re.compile(r"\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(?:\.\d+)?", re.ASCII)


def _timestamp(value: str) -> datetime:
    _refuse_poison(value)
    if _LOCAL_TIME.fullmatch(value):
        raise ValueError("must include a time zone offset, like Z or +00:00")
    if not RFC3339.fullmatch(value):
        raise ValueError("must be an RFC 3339 timestamp with a time zone, like 2017-02-05T21:56:00Z")
    try:
        parsed = datetime.fromisoformat(value.upper())
    except ValueError:
        raise ValueError("is not a valid date and time") from None
    # In UTC: PostgreSQL keeps no offset beyond ±15:59, which RFC 3339 allows. An instant outside Python's
    # years 1-9999 once in UTC (0001-01-01T00:00+05:00) is read as the nearest representable one.
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        return (datetime.min if parsed.year == 1 else datetime.max).replace(tzinfo=UTC)


Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"}), AfterValidator(_timestamp)]


def _json_value(value: Any, depth: int = 0) -> Any:
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"nests deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, str):
        return _refuse_poison(value)
    if isinstance(value, dict):
        for key, item in value.items():
            _refuse_poison(key)
            _json_value(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _json_value(item, depth + 1)
    return value


# Any JSON object whose strings (keys included) hold no NUL or lone surrogate: PostgreSQL's jsonb refuses them.
# (Published as a reference to the recursive schemas below, put in place by openapi_document().)
JsonObject = Annotated[dict[str, Any], AfterValidator(_json_value), WithJsonSchema({"x-json-object": True})]
JSON_SCHEMAS = {
    "JsonObject": {"type": "object", "propertyNames": {"pattern": NO_NUL},
                   "additionalProperties": {"$ref": "#/components/schemas/JsonValue"},
                   "description": f"Any JSON object, nested at most {MAX_JSON_DEPTH} levels, whose strings and "
                                  "keys hold no NUL."},
    "JsonValue": {"anyOf": [{"type": "string", "pattern": NO_NUL}, {"type": "number"}, {"type": "boolean"},
                            {"type": "null"}, {"type": "array", "items": {"$ref": "#/components/schemas/JsonValue"}},
                            {"$ref": "#/components/schemas/JsonObject"}]},
}


# --- parsing --------------------------------------------------------------------------------------


def _label(loc: tuple) -> str:
    label = ""
    for part in loc:
        if isinstance(part, int):
            label += f"[{part}]"
        elif not str(part).startswith(("function-", "int", "str", "bool", "list", "dict")) or not label:
            label += f".{part}" if label else str(part)
    return label


_MESSAGES = {
    "missing": "is required",
    "int_type": "must be an integer",
    "string_type": "must be a string",
    "bool_type": "must be a boolean",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "list_type": "must be an array",
    "none_required": "must be null",
}


def _message(error: dict) -> str:
    label = _label(tuple(error["loc"]))
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind in _MESSAGES:
        text = _MESSAGES[kind]
    elif kind == "greater_than_equal":
        text = f"must be at least {ctx['ge']}"
    elif kind == "less_than_equal":
        text = f"must be at most {ctx['le']}"
    elif kind == "string_too_long":
        text = f"is longer than {ctx['max_length']} characters"
    elif kind == "string_too_short":
        text = "must not be blank" if ctx.get("min_length") == 1 else f"is shorter than {ctx['min_length']} characters"
    elif kind == "too_short":
        n = ctx["min_length"]
        text = f"must list at least {n} item{'s' * (n != 1)}"
    elif kind == "too_long":
        n = ctx["max_length"]
        text = f"must list at most {n} item{'s' * (n != 1)}"
    elif kind == "literal_error":
        text = f"must be one of {ctx['expected'].replace(chr(39), '').replace(' or ', ', ')}"
    elif kind == "string_unicode":  # pydantic's own refusal of a lone surrogate
        text = f"must not contain {poison(error.get('input', '')) or 'a lone surrogate'}"
    elif kind == "value_error":
        text = str(ctx.get("error", error["msg"]))
    else:
        text = error["msg"][:1].lower() + error["msg"][1:]
    return f"'{label}' {text}" if label else text


def validate(model: type[ApiModel], data: Any) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        errors = e.errors(include_url=False)
        details = [{"field": _label(tuple(err["loc"])), "message": _message(err)} for err in errors]
        raise ApiError(400, details[0]["message"], errors=details) from None
    except RecursionError:
        raise ApiError(400, f"the body nests deeper than {MAX_JSON_DEPTH} levels") from None


def _validate_param(adapter: TypeAdapter, name: str, value: Any) -> Any:
    try:
        return adapter.validate_python(value)
    except ValidationError as e:
        raise ApiError(400, _message({**e.errors(include_url=False)[0], "loc": (name,)})) from None


def json_body(request: HttpRequest) -> Any:
    if request.content_type != "application/json":
        raise ApiError(415, f"expected Content-Type application/json, got {request.content_type or 'none'}")
    try:
        raw = request.body
    except RequestDataTooBig:
        raise ApiError(413, f"the body is over the {settings.DATA_UPLOAD_MAX_MEMORY_SIZE}-byte limit") from None
    try:
        return json.loads(raw)
    except RecursionError:
        raise ApiError(400, "malformed JSON: nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise ApiError(400, f"malformed JSON: {e}") from None


_QUERY_INTEGER = re.compile(r"-?[0-9]{1,19}")


def _is_int(annotation: Any) -> bool:
    """int, or Integer(...) (an Annotated int), or either of them | None."""
    if get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if annotation is int:
        return True
    return any(_is_int(arg) for arg in get_args(annotation) if arg is not type(None))


def _query_data(request: HttpRequest, model: type[ApiModel]) -> dict:
    """Query strings are text: integer fields are read from ASCII digits, everything else left as is."""
    data: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        if name not in request.GET:
            continue
        value = request.GET[name]
        if _is_int(info.annotation) and _QUERY_INTEGER.fullmatch(value):
            data[name] = int(value)
        else:
            data[name] = value
    return data


# --- operations -----------------------------------------------------------------------------------

ERROR_TEXT = {
    400: "Malformed JSON, a wrong type, a missing field or a value out of range; `error` names the field",
    401: "Missing, malformed or revoked token",
    403: "The token is valid but may not do this (its kind, queues or repositories do not allow it)",
    404: "No such job (or not visible to the caller)",
    409: "Conflict: a superseded attempt, a duplicate number, a transition that cannot happen, or values that "
         "contradict each other (a schema cannot say so)",
    413: "A part over LOG_PART_MAX_BYTES, a log over LOG_MAX_BYTES, or a body over the size limit",
    410: "The archived log cannot be served: it expired (`log expired on DATE`) or its object is missing or "
         "corrupt (`log unavailable: archive object missing`); the job itself is still there",
    415: "The body is not application/json",
    429: "Too many parts are waiting to be stored for this job; wait Retry-After seconds, then resend",
    503: "The database or Redis is briefly unreachable; wait Retry-After seconds, then resend",
}


@dataclass
class Operation:
    method: str
    path: str
    summary: str
    ok: tuple[int, str, type[BaseModel] | None]
    body: type[ApiModel] | None = None
    query: type[ApiModel] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    auth: str | None = None  # "required", "optional" (public data without) or None
    errors: tuple[int, ...] = ()
    description: str = ""
    name: str = ""
    links: dict[str, dict[str, str]] = field(default_factory=dict)  # operationId -> {parameter: expression}


_OPERATIONS: list[Operation] = []


@dataclass
class Call:
    """What a view gets besides the request: its operation's validated body and query."""

    request: HttpRequest
    op: Operation

    def body(self) -> Any:
        assert self.op.body is not None
        return validate(self.op.body, json_body(self.request))

    def raw_body(self) -> bytes:
        return self.request.body

    def query(self) -> Any:
        assert self.op.query is not None
        return validate(self.op.query, _query_data(self.request, self.op.query))


def operation(method: str, path: str, *, summary: str, ok: tuple, body: type[ApiModel] | None = None,
              query: type[ApiModel] | None = None, params: dict[str, Any] | None = None, auth: str | None = None,
              errors: tuple[int, ...] = (), description: str = "", links: dict | None = None) -> Callable:
    """Declare and register one API operation; the view receives `call` as a keyword argument."""
    status, text, *model = ok
    implied = {*((400, 413, 415) if body else ()), *((400,) if query or params else ()),
               *((401,) if auth == "required" else ())}
    op = Operation(method=method, path=path, summary=summary, ok=(status, text, model[0] if model else None),
                   body=body, query=query, params=params or {}, auth=auth, errors=tuple(sorted({*errors, *implied})),
                   description=description, links=links or {})
    _OPERATIONS.append(op)

    param_types = {name: TypeAdapter(kind) for name, kind in op.params.items()}

    def decorate(view: Callable) -> Callable:
        def refused(request: HttpRequest) -> HttpResponse | None:
            if request.method != method:
                response = json_error(405, f"method not allowed; this resource answers {method}")
                response["Allow"] = method
                return response
            return None

        def failed(request: HttpRequest, error: Exception) -> HttpResponse:
            if isinstance(error, ApiError):
                return error.response()
            log.warning("answering 503 to %s %s: %r", request.method, request.path, error)
            return unavailable()

        if iscoroutinefunction(view):  # a view that runs on the event loop (see buildboard/asgi.py)
            @wraps(view)
            async def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
                if (response := refused(request)) is not None:
                    return response
                try:
                    for name, adapter in param_types.items():
                        kwargs[name] = _validate_param(adapter, name, kwargs[name])
                    return await view(request, *args, call=Call(request, op), **kwargs)
                except (ApiError, *TRANSIENT_ERRORS) as e:
                    return failed(request, e)
        else:
            @wraps(view)
            def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
                if (response := refused(request)) is not None:
                    return response
                try:
                    for name, adapter in param_types.items():
                        kwargs[name] = _validate_param(adapter, name, kwargs[name])
                    return view(request, *args, call=Call(request, op), **kwargs)
                except (ApiError, *TRANSIENT_ERRORS) as e:
                    return failed(request, e)

        op.name = view.__name__
        wrapper.operation = op
        return csrf_exempt(wrapper)

    return decorate


def route(*views: Callable) -> Callable:
    """One URL answering several operations (e.g. GET and POST of a job's log), 405 with Allow otherwise.

    The dispatcher is sync; an async view behind it is run to completion (Django's sync handlers and the
    test client get its answer). The lean ASGI handler instead calls an async view itself, on the event
    loop, found by `view_for` (buildboard/asgi.py)."""
    by_method = {view.operation.method: view for view in views}
    allow = ", ".join(sorted(by_method))

    @csrf_exempt
    def dispatch(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        view = by_method.get(request.method)
        if view is None:
            response = json_error(405, f"method not allowed; this resource answers {allow}")
            response["Allow"] = allow
            return response
        if iscoroutinefunction(view):
            return async_to_sync(view)(request, *args, **kwargs)
        return view(request, *args, **kwargs)

    dispatch.by_method = by_method
    return dispatch


def view_for(callback: Callable, method: str) -> Callable:
    """The view a URL's callback runs for `method`: the operation itself behind a route(), else the callback."""
    return getattr(callback, "by_method", {}).get(method, callback)


# --- the published document ----------------------------------------------------------------------


def _ref(model: type[BaseModel]) -> dict:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _content(model: type[BaseModel] | None) -> dict:
    return {"content": {"application/json": {"schema": _ref(model)}}} if model else {}


def _link_json_objects(node: Any) -> Any:
    if isinstance(node, dict):
        if node.get("x-json-object"):
            return {"$ref": "#/components/schemas/JsonObject",
                    **{k: v for k, v in node.items() if k not in ("x-json-object", "type")}}
        return {k: _link_json_objects(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_link_json_objects(v) for v in node]
    return node


def openapi_document(*, title: str, version: str, description: str, error_model: type[BaseModel]) -> dict:
    models: dict[str, tuple[type[BaseModel], str]] = {error_model.__name__: (error_model, "serialization")}
    for op in _OPERATIONS:
        if op.body:
            models[op.body.__name__] = (op.body, "validation")
        if op.ok[2]:
            models.setdefault(op.ok[2].__name__, (op.ok[2], "serialization"))
    _, defs = models_json_schema(list(models.values()), ref_template="#/components/schemas/{model}")
    paths: dict[str, dict] = {}
    retry_after = {"Retry-After": {"description": "Seconds to wait before resending", "schema": {"type": "integer"}}}
    for op in sorted(_OPERATIONS, key=lambda o: (o.path, o.method)):
        parameters = [{"name": name, "in": "path", "required": True, "schema": TypeAdapter(kind).json_schema()}
                      for name, kind in op.params.items()]
        if op.query:
            schema = op.query.model_json_schema()
            for name, prop in schema["properties"].items():
                parameters.append({"name": name, "in": "query", "required": name in schema.get("required", []),
                                   "schema": prop})
        responses: dict[str, dict] = {str(op.ok[0]): {"description": op.ok[1], **_content(op.ok[2])}}
        if op.links:  # what a client (or a stateful fuzzer) can do next with what this answer returns
            responses[str(op.ok[0])]["links"] = {target: {"operationId": target, "parameters": parameters}
                                                 for target, parameters in op.links.items()}
        for status in (*op.errors, 503):
            answer = {"description": ERROR_TEXT[status], **_content(error_model)}
            if status in (429, 503):
                answer["headers"] = retry_after
            responses[str(status)] = answer
        entry: dict[str, Any] = {"summary": op.summary, "operationId": op.name,
                                 "responses": responses}
        if op.description:
            entry["description"] = op.description
        if parameters:
            entry["parameters"] = parameters
        if op.body:
            entry["requestBody"] = {"required": True, **_content(op.body)}
        if op.auth == "required":
            entry["security"] = [{"bearer": []}]
        elif op.auth == "optional":
            entry["security"] = [{}, {"bearer": []}]
        paths.setdefault(op.path, {})[op.method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": description},
        "servers": [{"url": "/"}],
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
                       "schemas": {**JSON_SCHEMAS, **_link_json_objects(defs.get("$defs", {}))}},
        "paths": paths,
    }
