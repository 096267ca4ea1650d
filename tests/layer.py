"""Listening to the channel layer from a test, as a web process listens: on one long-lived event loop
(the pub/sub layer delivers to the consumers subscribed now, on the loop that subscribed them)."""

import asyncio
import threading

from channels.layers import get_channel_layer

_loop: asyncio.AbstractEventLoop | None = None


def _run(coroutine, timeout: float = 10):
    global _loop
    if _loop is None or _loop.is_closed():
        _loop = asyncio.new_event_loop()
        threading.Thread(target=_loop.run_forever, name="test-listener", daemon=True).start()
    return asyncio.run_coroutine_threadsafe(coroutine, _loop).result(timeout)


def listen(*groups: str) -> str:
    """A channel in these groups, subscribed by the time this returns (a probe frame came back)."""
    layer = get_channel_layer()
    channel = _run(layer.new_channel())
    for group in groups:
        _run(layer.group_add(group, channel))
        probe = {"type": "test.probe", "group": group}
        _run(layer.group_send(group, probe))
        frame = receive(channel)
        while frame != probe:  # nothing else is sent to a channel this new
            frame = receive(channel)
    return channel


def receive(channel: str, timeout: float = 10) -> dict:
    """The channel's next frame; TimeoutError if none comes within `timeout` seconds."""
    return _run(get_channel_layer().receive(channel), timeout)
