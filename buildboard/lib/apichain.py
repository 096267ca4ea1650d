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

from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest, HttpResponse

API_PREFIX = "/api/v1/"


def is_lean(scope: dict) -> bool:
    """An HTTP request for the lean chain: under /api/v1/ with a Bearer Authorization header."""
    if not scope.get("path", "").startswith(API_PREFIX):
        return False
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            return value[:7].lower() == b"bearer "
    return False


class TokenOnlyMiddleware:
    """No session on the lean chain: the request's user is anonymous, whatever cookies it carries, so
    only its token can grant anything (views read request.user for public data)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.user = AnonymousUser()
        return self.get_response(request)
