"""Who is calling the API: the bearer token check every worker endpoint shares (the fleet's heartbeat too)."""

from django.http import HttpRequest

from buildboard.lib.jsonapi import ApiError

from .models import ApiToken


def token_from(request: HttpRequest) -> ApiToken | None:
    """The valid token the request carries, if any."""
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        return None
    return ApiToken.objects.authenticate(secret.strip())


def require_token(request: HttpRequest) -> ApiToken:
    """The request's valid token; raises ApiError(401) with a message saying what is wrong."""
    if "Authorization" not in request.headers:
        raise ApiError(401, "missing Authorization header; send 'Authorization: Bearer <token>'")
    token = token_from(request)
    if token is None:
        raise ApiError(401, "invalid or revoked API token")
    return token
