"""System checks of the jobs app: the Redis that buffers accepted log parts must persist them."""

import redis
from django.conf import settings
from django.core import checks


@checks.register(checks.Tags.database, deploy=True)
def redis_persists_log_buffers(app_configs, **kwargs) -> list[checks.CheckMessage]:
    from . import ingest

    if settings.REDIS_PERSISTENCE == "off":
        return []
    try:
        problem = ingest.persistence_problem()
    except redis.RedisError as e:
        return [checks.Warning(f"Could not ask Redis at REDIS_URL whether it persists: {e}",
                               id="jobs.W001")]
    if problem is None:
        return []
    return [checks.Error(f"{problem}.", hint="Run Redis with --appendonly yes --appendfsync everysec (or always).",
                         id="jobs.E001")]
