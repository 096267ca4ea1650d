"""Template helpers of the status page: sanitized markdown and Statuspage-style UTC times."""

from datetime import UTC, datetime

from django import template
from django.utils.safestring import SafeString

from incidents.markdown import render_markdown
from incidents.models import ComponentStatus, IncidentStatus, MaintenanceStatus

register = template.Library()


@register.filter
def markdown(source: str) -> SafeString:
    return render_markdown(source)


@register.filter
def utc(value: datetime | None) -> str:
    """Like Statuspage: 'Feb 06, 2017 - 00:31 UTC'."""
    if value is None:
        return ""
    return value.astimezone(UTC).strftime("%b %d, %Y - %H:%M UTC")


@register.filter
def iso(value: datetime | None) -> str:
    return value.isoformat() if value else ""


@register.filter
def status_label(value: str) -> str:
    """'partial_outage' -> 'Partial outage', for component and maintenance statuses."""
    for choices in (ComponentStatus, MaintenanceStatus, IncidentStatus):
        if value in choices.values:
            return choices(value).label
    return value
