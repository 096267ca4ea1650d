"""The cache backend (buildboard/lib/cache.py): requests share one connection pool per process."""

import asyncio
import contextvars

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.core import signals
from django.core.cache import cache


def test_requests_in_their_own_contexts_share_one_redis_connection():
    """Under ASGI each request has its own context, and so its own cache backend object. Twenty requests that
    each read the cache still open one connection between them: Django's own backend opened one per request."""
    pools = []

    def view():
        cache.get("test-cache:anything")
        pools.append(cache._cache._get_connection_pool(write=False))
        signals.request_finished.send(sender=None)  # what ends a request (Django closes its caches here)

    async def request():
        async with ThreadSensitiveContext():
            await sync_to_async(view, thread_sensitive=True)()

    async def twenty():
        for _ in range(20):
            await asyncio.create_task(request())  # a task per request, as the server runs them

    contextvars.Context().run(asyncio.run, twenty())  # as the server's, the requests' contexts start without a cache
    assert len({id(pool) for pool in pools}) == 1
    assert pools[0]._created_connections == 1
