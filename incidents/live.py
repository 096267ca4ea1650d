"""Cache and doorbell of the public status page.

Any save of a public object bumps StatusPageState in the same transaction (signals below), so pages
cached under the old sequence are never served again once it commits; after the commit a frame
carrying the new sequence goes to the status page's websocket group."""

import logging
from collections.abc import Callable

import redis
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models.signals import m2m_changed, post_delete, post_save

from buildboard.lib import doorbell

from . import fastpath
from .models import (
    Component,
    ComponentGroup,
    Incident,
    IncidentUpdate,
    Maintenance,
    MaintenanceUpdate,
    Postmortem,
    StatusPageState,
)

log = logging.getLogger(__name__)

GROUP = "status-page"
PUBLIC_MODELS = (ComponentGroup, Component, Incident, IncidentUpdate, Postmortem, Maintenance, MaintenanceUpdate)


def status_changed(**kwargs) -> None:
    StatusPageState.bump()
    fastpath.forget()
    transaction.on_commit(announce)


def announce() -> None:
    """Runs after the commit, so the frame carries the committed sequence. A lost frame is tolerated:
    clients also poll, and the data is committed."""
    state = StatusPageState.current()
    fastpath.publish(state.key)
    doorbell.ring([GROUP], {"type": "status.changed", "seq": state.seq})


def connect_signals() -> None:
    for model in PUBLIC_MODELS:
        post_save.connect(status_changed, sender=model, dispatch_uid=f"status-save-{model.__name__}")
        post_delete.connect(status_changed, sender=model, dispatch_uid=f"status-delete-{model.__name__}")
    for through in (Incident.components.through, Maintenance.components.through):
        m2m_changed.connect(status_changed, sender=through, dispatch_uid=f"status-m2m-{through.__name__}")


def cached(name: str, build: Callable[[], str | bytes],
           state: StatusPageState | None = None) -> tuple[str | bytes, StatusPageState]:
    """`build()`'s result for the current (or given) state of the page, from the cache when it has it."""
    state = state or StatusPageState.current()
    key = f"incidents:{name}:{state.key}"
    try:
        value = cache.get(key)
    except redis.RedisError:  # Redis is down: the page is built from the database, as on a miss
        log.warning("status page cache unavailable; building %s from the database", name)
        return build(), state
    if value is None:
        value = build()
        try:
            cache.set(key, value, settings.STATUS_PAGE_CACHE_SECONDS)
        except redis.RedisError:
            log.warning("could not cache %s", name)
    return value, state
