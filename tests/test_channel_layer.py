"""The channel layer (buildboard/lib/channel_layer.py): one PUBLISH per frame reaches every consumer of the
group in this process, and a consumer that stops reading holds CHANNEL_CAPACITY frames, no more."""

import asyncio

import pytest
from django.conf import settings

from buildboard.lib.channel_layer import ChannelLayer


def layer(capacity: int) -> ChannelLayer:
    return ChannelLayer(hosts=[settings.REDIS_URL], prefix=f"{settings.CHANNEL_PREFIX}:layer-test",
                        capacity=capacity)


def test_a_group_frame_reaches_every_consumer_of_the_group_in_order():
    async def scenario():
        viewers, sender = layer(10), layer(10)  # the sender as another process would be
        channels = [await viewers.new_channel() for _ in range(3)]
        for channel in channels[:2]:
            await viewers.group_add("job-7", channel)
        await asyncio.sleep(0.1)  # the subscription is in place
        for n in range(3):
            await sender.group_send("job-7", {"type": "log.parts", "n": n})
        got = [[(await asyncio.wait_for(viewers.receive(c), 5))["n"] for _ in range(3)] for c in channels[:2]]
        with pytest.raises(TimeoutError):  # not in the group: nothing
            await asyncio.wait_for(viewers.receive(channels[2]), 0.3)
        await viewers.flush()
        await sender.flush()
        return got

    assert asyncio.run(scenario()) == [[0, 1, 2], [0, 1, 2]]


def test_a_consumer_that_stops_reading_keeps_capacity_frames_and_others_still_get_theirs(caplog):
    async def scenario():
        viewers = layer(2)
        slow, fast = await viewers.new_channel(), await viewers.new_channel()
        await viewers.group_add("job-8", slow)
        await viewers.group_add("job-8", fast)
        await asyncio.sleep(0.1)
        got_fast = []
        for n in range(4):
            await viewers.group_send("job-8", {"type": "log.parts", "n": n})
            got_fast.append((await asyncio.wait_for(viewers.receive(fast), 5))["n"])
        got_slow = [(await asyncio.wait_for(viewers.receive(slow), 5))["n"] for _ in range(2)]
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(viewers.receive(slow), 0.3)
        await viewers.flush()
        return got_fast, got_slow

    assert asyncio.run(scenario()) == ([0, 1, 2, 3], [0, 1])
    assert "is full (2 frames): dropping a frame" in caplog.text
