"""Django's Redis cache, with one client (and so one connection pool) per process.

Under ASGI, `django.core.cache.caches` holds a backend object per request context, and Django's
RedisCacheClient keeps its connection pools on that object. So every request that touched the cache (the
token generation check, rate limits, the status page's builders) opened a TCP connection to Redis and
dropped it with the request (Django ticket #35651). Here the client is shared by every backend object of the
process with the same servers and options, so requests take connections from one pool, as redis-py means
them to. redis-py's pool notices a fork and starts afresh in the child."""

import os
import threading

from django.core.cache.backends import redis
from django.utils.functional import cached_property

_lock = threading.Lock()
_clients: dict[tuple, redis.RedisCacheClient] = {}


class RedisCache(redis.RedisCache):
    @cached_property
    def _cache(self) -> redis.RedisCacheClient:
        key = (os.getpid(), tuple(self._servers), repr(sorted(self._options.items())))
        with _lock:
            client = _clients.get(key)
            if client is None:
                client = _clients[key] = self._class(self._servers, **self._options)
            return client
