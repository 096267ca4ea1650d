"""A front door for the public status page: cached anonymous GETs answered before the rest of Django.

The page and JSON are already cached per StatusPageState (live.py), but reaching the view still costs
the whole middleware chain, each step a thread hop under ASGI. This middleware sits near the top and
answers from Redis in one round trip: an entry is served only while its tag equals the LIVE key, the
StatusPageState key last known to be current. Any save of a public row deletes LIVE at once (in the
transaction) and sets it again after the commit, so an entry never outlives the state it shows; the
views store entries and, when LIVE is missing, adopt the state they read from the database.
Both expire after STATUS_PAGE_CACHE_SECONDS, which also bounds a lost post-commit update."""

import logging
import re
from collections.abc import Callable

import redis
import redis.asyncio
from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponse

log = logging.getLogger(__name__)

PREFIX = f"{settings.CHANNEL_PREFIX}:incidents:fast:"
LIVE = PREFIX + "live"
# The exact paths (query string included) answered here; anything else takes the normal route.
ELIGIBLE = re.compile(r"^/(?:status/(?:\?fragment=1|incidents/[0-9a-z]{12}/(?:\?fragment=1)?)?"
                      r"|api/v2/[a-z/-]+\.json)$")
PER_USER = re.compile(r"^/status/(?:incidents/[0-9a-z]{12}/)?$")  # full pages: the navigation shows the user
SEPARATOR = b"\n\x00\n"

_sync_client: redis.Redis | None = None
_async_clients: dict[int, redis.asyncio.Redis] = {}


def _timeouts() -> dict:
    # While Redis is down the normal route answers from the database; it must not wait long to find out.
    return {"socket_connect_timeout": settings.REDIS_CONNECT_TIMEOUT, "socket_timeout": settings.REDIS_CONNECT_TIMEOUT}


def _client() -> redis.Redis:
    global _sync_client
    if _sync_client is None:
        _sync_client = redis.Redis.from_url(settings.REDIS_URL, **_timeouts())
    return _sync_client


def _async_client() -> redis.asyncio.Redis:
    import asyncio

    loop = asyncio.get_running_loop()
    client = _async_clients.get(id(loop))
    if client is None:
        client = _async_clients[id(loop)] = redis.asyncio.Redis.from_url(settings.REDIS_URL, **_timeouts())
    return client


def key_for(request: HttpRequest) -> str | None:
    """The entry's key, or None if this request must take the normal route.

    The Host header is validated first (DisallowedHost: 400), as CommonMiddleware would have done: a
    cached answer must not be a way around ALLOWED_HOSTS."""
    if request.method != "GET":
        return None
    path = request.get_full_path()
    if not ELIGIBLE.match(path):
        return None
    request.get_host()
    if PER_USER.match(path) and settings.SESSION_COOKIE_NAME in request.COOKIES:
        return None
    return PREFIX + path


def forget() -> None:
    """In the transaction that changes something public: stop serving entries at once."""
    try:
        _client().delete(LIVE)
    except redis.RedisError:  # a Redis that is down serves nothing either; entries expire anyway
        log.warning("could not close the status page front door", exc_info=True)


def publish(state_key: str) -> None:
    """After the commit: entries tagged with this (committed, current) state may be served."""
    try:
        _client().set(LIVE, state_key, ex=settings.STATUS_PAGE_CACHE_SECONDS)
    except redis.RedisError:
        log.warning("could not publish the status page state", exc_info=True)


def store(request: HttpRequest, state_key: str, response: HttpResponse) -> HttpResponse:
    """Keep a view's response for the front door, and adopt its state if none is known current."""
    key = key_for(request)
    if key is None or response.status_code != 200:
        return response
    headers = "\n".join(f"{k}: {v}" for k, v in response.items() if k.lower() != "content-length")
    entry = SEPARATOR.join([state_key.encode(), headers.encode(), response.content])
    pipe = _client().pipeline()
    pipe.set(key, entry, ex=settings.STATUS_PAGE_CACHE_SECONDS)
    pipe.set(LIVE, state_key, ex=settings.STATUS_PAGE_CACHE_SECONDS, nx=True)
    try:
        pipe.execute()
    except redis.RedisError:
        log.warning("could not store a status page entry", exc_info=True)
    return response


def _answer(live: bytes | None, entry: bytes | None) -> HttpResponse | None:
    if not live or not entry:
        return None
    tag, headers, body = entry.split(SEPARATOR, 2)
    if tag != live:
        return None
    response = HttpResponse(body)
    for line in headers.decode().split("\n"):
        name, _, value = line.partition(": ")
        response[name] = value
    response.setdefault("X-Frame-Options", settings.X_FRAME_OPTIONS)
    return response


class StatusCacheMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable):
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest):
        if self.is_async:
            return self._acall(request)
        key = key_for(request)
        if key is not None:
            try:
                response = _answer(*_client().mget(LIVE, key))
            except redis.RedisError:
                response = None  # the normal route still answers, from the database
            if response is not None:
                return response
        return self.get_response(request)

    async def _acall(self, request: HttpRequest):
        key = key_for(request)
        if key is not None:
            try:
                response = _answer(*await _async_client().mget(LIVE, key))
            except redis.RedisError:
                response = None
            if response is not None:
                return response
        return await self.get_response(request)
