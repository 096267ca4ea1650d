"""The worker API's lean middleware chain: what a token-authenticated JSON request needs, nothing more.

buildboard/asgi.py sends requests under /api/v1/ that carry `Authorization: Bearer ...` to a second
Django handler loaded with settings.API_MIDDLEWARE; everything else (pages, forms, session-authenticated
calls, the status pages) keeps settings.MIDDLEWARE. Both handlers resolve the same URLs to the same
views, so every endpoint has one implementation, one validation and one set of rules.

Why it is safe: the API's operations are CSRF-exempt because they authenticate by token, never by
cookie, and a browser cannot add an Authorization header to a cross-site request without a CORS
preflight, which this site never grants. A lean request is judged by its token alone: it has no session
(AnonymousUser), so a cookie sent along grants nothing. JSON answers need no CSP or frame options."""

from collections.abc import Callable
from functools import lru_cache

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest, HttpResponse
from django.middleware.security import SecurityMiddleware as DjangoSecurityMiddleware
from django.urls import Resolver404, ResolverMatch, get_resolver

API_PREFIX = "/api/v1/"


def is_lean(scope: dict) -> bool:
    """An HTTP request for the lean chain: under /api/v1/ with a Bearer Authorization header."""
    if not scope.get("path", "").startswith(API_PREFIX):
        return False
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            return value[:7].lower() == b"bearer "
    return False


class SecurityMiddleware(DjangoSecurityMiddleware):
    """Django's SecurityMiddleware (HTTPS redirect, HSTS, nosniff, referrer and opener policies), with its two
    hooks called inline in an async chain. Django's MiddlewareMixin runs each hook of an async chain in the
    sync thread, two thread hops per request that cost the worker's log POST more than the rest of its work
    (measured: 3.4 of 6 ms in the handler); the hooks only read settings and set headers."""

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        response = self.process_request(request) or await self.get_response(request)
        return self.process_response(request, response)

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        response = super().process_response(request, response)
        # What the full chain's CommonMiddleware does: an answer of known length says so, rather than going
        # out in chunked transfer encoding (uvicorn's choice without it).
        if not response.streaming and not response.has_header("Content-Length"):
            response.headers["Content-Length"] = str(len(response.content))
        return response


def resolve(path: str, method: str) -> ResolverMatch | None:
    """The default URLconf's match for a lean request, with the view for its method (not the route()
    dispatching to it), remembered: a worker posts to the same job's URL many times, and resolving walks
    every pattern of the site (Django's walk was ~8% of the log POST's time under bench/ingest). None for a
    path that matches nothing."""
    return _resolve(get_resolver(), path, method)  # a changed URLconf is a new resolver: nothing stale


@lru_cache(maxsize=4096)
def _resolve(resolver, path: str, method: str) -> ResolverMatch | None:
    from .jsonapi import view_for

    try:
        match = resolver.resolve(path)
    except Resolver404:
        return None
    match.func = view_for(match.func, method)
    return match


def runs_on_loop(scope: dict) -> bool:
    """A lean request whose view is async: buildboard/asgi.py serves it on the event loop."""
    match = resolve(scope["path"], scope.get("method", ""))
    return match is not None and iscoroutinefunction(match.func)


class TokenOnlyMiddleware:
    """No session on the lean chain: the request's user is anonymous, whatever cookies it carries, so
    only its token can grant anything (views read request.user for public data)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.user = AnonymousUser()
        return self.get_response(request)  # a coroutine in an async chain, which the caller awaits
