"""Template context shared by every page."""

from functools import partial

from django.conf import settings
from django.http import HttpRequest

from incidents.staff import can_manage_incidents


def site(request: HttpRequest) -> dict:
    return {
        "site_name": settings.SITE_NAME,
        "oidc_enabled": settings.OIDC_ENABLED,
        # A callable, so the group lookup only runs on pages that ask.
        "can_manage_incidents": partial(can_manage_incidents, request.user),
    }
