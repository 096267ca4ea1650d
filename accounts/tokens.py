"""Authenticating API tokens fast, and refusing revoked or expired ones in every process within a second.

Each process keeps recently verified tokens in memory, so a busy worker's requests do not each query the
database. Revoking (or otherwise changing) a token bumps a generation counter in Redis; every process
reads that counter at most every GENERATION_CHECK_SECONDS and empties its cache when it moved. So a
revoked token is refused everywhere within that interval, at the price of one Redis GET per process per
interval, not per request. Expiry is checked on every use.

`token_from` and `require_token` are the one bearer-token check of every API endpoint (the jobs API and
the fleet's heartbeat); what a token may then do is accounts.permissions' to decide."""

import copy
import threading
import time
from datetime import timedelta

from django.core.cache import cache
from django.db import transaction
from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone

from buildboard.lib.dbthread import in_db_thread
from buildboard.lib.jsonapi import ApiError

from .models import ApiToken, TokenKind, hash_secret

TOKEN_CACHE_SECONDS = 10
GENERATION_CHECK_SECONDS = 0.5
GENERATION_KEY = "tokens:generation"

_lock = threading.Lock()
_cache: dict[str, tuple[float, ApiToken]] = {}
_generation: list = [None, 0.0]  # the last generation seen, and when it was read (monotonic)


def _check_generation() -> None:
    now = time.monotonic()
    if now - _generation[1] < GENERATION_CHECK_SECONDS:
        return
    try:
        current = cache.get(GENERATION_KEY)
    except Exception:  # Redis unreachable: trust only the database until it answers again
        current = object()
    with _lock:
        if current != _generation[0]:
            _cache.clear()
        _generation[0], _generation[1] = current, now


def bump_generation() -> None:
    """Tell every process to forget its cached tokens: now, and again once the change is committed
    (a process that re-read the token in between would otherwise cache its old state)."""
    _cache.clear()
    _bump()
    transaction.on_commit(_bump)


def _bump() -> None:
    _cache.clear()
    try:
        if not cache.add(GENERATION_KEY, 1, timeout=None):
            cache.incr(GENERATION_KEY)
    except Exception:
        # Without Redis the other processes cannot hear of it; they drop their caches when reading
        # the generation fails, so they go to the database too.
        pass


def _fresh_copy(token: ApiToken) -> ApiToken:
    """A per-request copy, so what one request memoises on the token's user does not outlive it."""
    token = copy.copy(token)
    if token.kind == TokenKind.PERSONAL and token.user is not None:
        user = copy.copy(token.user)
        user.__dict__.pop("_bb_access", None)
        token.user = user
    return token


def authenticate(secret: str) -> ApiToken | None:
    """The live token with this secret, or None if it is unknown, revoked or expired."""
    hashed = hash_secret(secret)
    _check_generation()
    cached = _cache.get(hashed)
    if cached and cached[0] > time.monotonic():
        token = cached[1]
        if not token.is_live():
            return None
        return _fresh_copy(token)
    token = (ApiToken.objects.select_related("user").filter(hashed_secret=hashed, revoked_at__isnull=True)
             .first())
    if token is None or not token.is_live() or (token.user is not None and not token.user.is_active):
        _cache.pop(hashed, None)
        return None
    # Record use at most once a minute, so a busy worker does not write on every request.
    stale = timezone.now() - timedelta(minutes=1)
    ApiToken.objects.filter(Q(last_used_at__isnull=True) | Q(last_used_at__lt=stale), pk=token.pk).update(
        last_used_at=timezone.now())
    _cache[hashed] = (time.monotonic() + TOKEN_CACHE_SECONDS, token)
    return _fresh_copy(token)


def revoke(token: ApiToken) -> bool:
    """Revoke a token; False if it already was."""
    updated = ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    if updated:
        token.refresh_from_db()
        bump_generation()
    return bool(updated)



def _bearer_secret(request: HttpRequest) -> str | None:
    """The secret of `Authorization: Bearer <secret>`, if the request carries one."""
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    secret = secret.strip()
    return secret if scheme.lower() == "bearer" and secret else None


def token_from(request: HttpRequest) -> ApiToken | None:
    """The live token the request carries (`Authorization: Bearer <secret>`), if any."""
    secret = _bearer_secret(request)
    return authenticate(secret) if secret else None


def require_token(request: HttpRequest) -> ApiToken:
    """The request's live token; raises ApiError(401) with a message saying what is wrong."""
    if "Authorization" not in request.headers:
        raise ApiError(401, _MISSING)
    token = token_from(request)
    if token is None:
        raise ApiError(401, _INVALID)
    return token


async def arequire_token(request: HttpRequest) -> ApiToken:
    """require_token for a view on the event loop: a token verified in the last TOKEN_CACHE_SECONDS is
    taken from memory without leaving the loop; the generation check and a database read run in a thread."""
    if "Authorization" not in request.headers:
        raise ApiError(401, _MISSING)
    secret = _bearer_secret(request)
    token = None
    if secret:
        cached = _cache.get(hash_secret(secret))
        if (cached and cached[0] > time.monotonic() and cached[1].is_live()
                and time.monotonic() - _generation[1] < GENERATION_CHECK_SECONDS):
            token = _fresh_copy(cached[1])
        else:
            token = await in_db_thread(authenticate)(secret)
    if token is None:
        raise ApiError(401, _INVALID)
    return token


_MISSING = "missing Authorization header; send 'Authorization: Bearer <token>'"
_INVALID = "invalid, expired or revoked API token"
