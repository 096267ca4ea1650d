"""Site-wide system checks that Django's own deployment checklist lacks."""

from django.conf import settings
from django.core import checks


@checks.register(checks.Tags.security, deploy=True)
def allowed_hosts_not_wildcard(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """With ALLOWED_HOSTS = ["*"], any Host header is believed: cached pages, absolute links and the
    websocket Origin check (AllowedHostsOriginValidator) all trust whatever a client claims."""
    if settings.DEBUG or "*" not in settings.ALLOWED_HOSTS:
        return []
    return [checks.Error(
        "ALLOWED_HOSTS contains '*' in production.",
        hint="Set ALLOWED_HOSTS to the site's host names, or leave it unset to use SITE_ROOT's host.",
        id="buildboard.E001",
    )]
