"""Template filters for build pages: short human durations."""

from datetime import timedelta

from django import template

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
