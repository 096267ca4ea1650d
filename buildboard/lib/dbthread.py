"""Database work for code on the event loop: in the thread sync views use, its connection handled as a
request would handle it."""

from collections.abc import Callable
from functools import wraps
from typing import Any

from asgiref.sync import sync_to_async
from django.db import close_old_connections, connections


def _close_stale() -> None:
    """What request_started and request_finished do for a sync request: give back a connection that is
    broken (a PostgreSQL restart) or past its age. Never inside a transaction, which it would break."""
    if not any(conn.in_atomic_block for conn in connections.all(initialized_only=True)):
        close_old_connections()


def in_db_thread(function: Callable) -> Callable:
    """`await in_db_thread(f)(...)` runs f in the sync views' thread, between two connection checks."""

    @wraps(function)
    def checked(*args: Any, **kwargs: Any) -> Any:
        _close_stale()
        try:
            return function(*args, **kwargs)
        finally:
            _close_stale()

    return sync_to_async(checked, thread_sensitive=True)
