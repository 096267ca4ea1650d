"""bench/fanout: from a frame handed to this process's viewers of a job to the moment each has written it.

In one process and on one event loop, as in a web process: N job-page consumers (jobs/consumers.py) join
one group; the frame is put on their queues with group_send_here, as the log POST does, and every
consumer's socket send is timestamped. Our consumers read the socket's messages and their frames from one
queue (buildboard/lib/channel_layer.py's InboxConsumer). The baseline, measured in the same run, is the
same consumer under Channels' own loop (await_many_dispatch: two receive tasks, asyncio.wait, a new task
for every message). Printed: the first and the last viewer's send, p50, and the ratio of the last.

    .venv/bin/python bench/fanout/run.py [--viewers 6 100] [--frames 1000]
"""

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(BASE_DIR))

from buildboard.lib.redis_server import ensure_redis  # noqa: E402

GROUP = "bench-fanout"


def consumers():
    from channels.generic.websocket import AsyncJsonWebsocketConsumer

    from jobs.consumers import ForwardingConsumer

    class Viewer(ForwardingConsumer):
        async def connect(self) -> None:
            await self.join(GROUP)
            await self.accept()

        async def log_parts(self, event: dict) -> None:
            await self.send_json(event)

    class ChannelsLoopViewer(Viewer):
        __call__ = AsyncJsonWebsocketConsumer.__call__  # Channels' AsyncConsumer.__call__

    return Viewer, ChannelsLoopViewer


async def measure(consumer, viewers: int, frames: int) -> tuple[float, float]:
    """p50 (µs) from group_send_here to the first and to the last viewer's send."""
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    sends: list[float] = []
    accepted = asyncio.Event()
    accepts = 0

    async def send(message: dict) -> None:
        nonlocal accepts
        if message["type"] == "websocket.accept":
            accepts += 1
            if accepts == viewers:
                accepted.set()
        else:
            sends.append(time.perf_counter())

    inputs = [asyncio.Queue() for _ in range(viewers)]
    scope = {"type": "websocket", "path": "/", "query_string": b"", "headers": [], "subprotocols": []}
    apps = [asyncio.ensure_future(consumer.as_asgi()(scope, queue.get, send)) for queue in inputs]
    for queue in inputs:
        queue.put_nowait({"type": "websocket.connect"})
    await asyncio.wait_for(accepted.wait(), 30)
    await asyncio.sleep(0.2)
    frame = {"type": "log.parts", "job_id": 1, "attempt": 1, "parts": [{"number": 0, "content": "x" * 200}]}
    first, last = [], []
    for _ in range(frames):
        sends.clear()
        rung = time.perf_counter()
        layer.group_send_here(GROUP, frame)
        while len(sends) < viewers:
            await asyncio.sleep(0)
        first.append((sends[0] - rung) * 1e6)
        last.append((sends[-1] - rung) * 1e6)
        await asyncio.sleep(0.001)
    for queue in inputs:
        queue.put_nowait({"type": "websocket.disconnect", "code": 1000})
    await asyncio.gather(*apps)
    return statistics.median(first), statistics.median(last)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--viewers", type=int, nargs="+", default=[6, 100])
    parser.add_argument("--frames", type=int, default=1000)
    args = parser.parse_args()

    redis = ensure_redis()
    os.environ.update(REDIS_URL=redis.url, CHANNEL_PREFIX="benchfanout")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "buildboard.settings")
    import django

    django.setup()
    viewer, channels_loop_viewer = consumers()
    for n in args.viewers:
        # Alternating, twice each, so a slow phase of the machine does not land on one side only.
        ours, theirs = [], []
        for _ in range(2):
            theirs.append(asyncio.run(measure(channels_loop_viewer, n, args.frames)))
            ours.append(asyncio.run(measure(viewer, n, args.frames)))
        base_first, base_last = (statistics.median(t[i] for t in theirs) for i in (0, 1))
        first, last = (statistics.median(t[i] for t in ours) for i in (0, 1))
        print(f"{n} viewers of one job, {args.frames} frames:")
        print(f"  baseline, Channels' loop: first send p50 {base_first:.0f} µs, last {base_last:.0f} µs")
        print(f"  our consumers:            first send p50 {first:.0f} µs, last {last:.0f} µs")
        print(f"  ratio last / baseline: {last / base_last:.2f}  ({last / n:.1f} µs per viewer against "
              f"{base_last / n:.1f})")


if __name__ == "__main__":
    main()
