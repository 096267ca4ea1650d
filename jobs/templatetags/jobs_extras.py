"""Template filters for build pages: short human durations."""

from datetime import datetime, timedelta

from django import template
from django.utils import timezone

register = template.Library()


@register.filter
def duration(value: timedelta | None) -> str:
    """'1 h 2 min', '3 min 4 s', '5 s'; empty for no duration. Mirrors formatDuration in static/js/live.js."""
    if value is None:
        return ""
    seconds = max(int(value.total_seconds()), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


@register.filter
def config_summary(config: dict, limit: int = 4) -> list[str]:
    """The first few scalar settings of a job's config, like 'os: linux', for the build matrix."""
    if not isinstance(config, dict):
        return []
    items = [f"{k}: {v}" for k, v in config.items() if isinstance(v, str | int | float | bool)]
    return items[:limit]


@register.filter
def ago(value: datetime | None) -> str:
    """'just now', '5 min ago', '3 h ago', '2 days ago'. Mirrors relativeTime in static/js/live.js."""
    if value is None:
        return ""
    seconds = max(int((timezone.now() - value).total_seconds()), 0)
    if seconds < 45:
        return "just now"
    if seconds < 3600:
        return f"{max(1, round(seconds / 60))} min ago"
    if seconds < 86400:
        return f"{round(seconds / 3600)} h ago"
    days = round(seconds / 86400)
    return f"{days} day{'s' if days != 1 else ''} ago"


@register.filter
def get_item(mapping: dict, key: str):
    return mapping.get(key, "")
