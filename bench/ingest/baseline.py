"""The bare baseline: an ASGI endpoint that only parses a batch of log parts and pushes it to Redis."""

import json
import os

import redis.asyncio as redis

_redis = redis.from_url(os.environ["REDIS_URL"])


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["method"] != "POST":  # the readiness probe (bench.common.wait_listening) GETs the address
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    data = json.loads(body)
    await _redis.lpush("bench:baseline", json.dumps(data["parts"]))
    await send({"type": "http.response.start", "status": 202, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"cancel": false, "persisted_through": -1}'})
