"""The channel layer (buildboard/lib/channel_layer.py): one PUBLISH per frame reaches every consumer of the
group in another process, this process's own consumers get it in memory (once), and a consumer that stops
reading holds CHANNEL_CAPACITY frames, no more."""

import asyncio

import pytest
import redis.asyncio
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


async def here_and_elsewhere(group: str):
    """Two layers as two processes would have, each with a consumer in `group`: (here, elsewhere, mine,
    theirs), once the subscriptions are in place."""
    here, elsewhere = layer(10), layer(10)
    mine, theirs = await here.new_channel(), await elsewhere.new_channel()
    await here.group_add(group, mine)
    await elsewhere.group_add(group, theirs)
    await asyncio.sleep(0.1)
    return here, elsewhere, mine, theirs


def test_a_frame_reaches_this_process_s_consumers_in_memory_once_and_other_processes_through_redis():
    async def scenario():
        here, elsewhere, mine, theirs = await here_and_elsewhere("job-9")
        shard = here._get_layer()._shards[0]
        publish, published, release = shard.publish, asyncio.Event(), asyncio.Event()

        async def slow_publish(channel, message):  # Redis holds the PUBLISH back
            published.set()
            await release.wait()
            await publish(channel, message)

        shard.publish = slow_publish
        sending = asyncio.create_task(here.group_send("job-9", {"type": "log.parts", "n": 1}))
        await published.wait()
        got_here = await asyncio.wait_for(here.receive(mine), 1)  # before Redis has it
        assert not sending.done()
        release.set()
        await sending
        got_there = await asyncio.wait_for(elsewhere.receive(theirs), 5)
        with pytest.raises(TimeoutError):  # the echo from Redis is not delivered a second time
            await asyncio.wait_for(here.receive(mine), 0.3)  # (a receive cancelled by its timeout leaves)
        await here.flush()
        await elsewhere.flush()
        return got_here, got_there

    assert asyncio.run(scenario()) == ({"type": "log.parts", "n": 1}, {"type": "log.parts", "n": 1})


def test_a_frame_rung_from_a_view_is_with_this_process_s_consumers_when_the_ring_returns(monkeypatch):
    """doorbell.announce_now, as the log POST rings before it answers: the frame is on this process's
    consumers' queues when the call returns, before anything went to Redis; another process gets it once
    the function the ring returned is awaited (after the answer)."""
    from buildboard.lib import doorbell

    async def scenario():
        here, elsewhere, mine, theirs = await here_and_elsewhere("job-11")
        monkeypatch.setattr(doorbell, "get_channel_layer", lambda: here)
        publishes = []
        shard = here._get_layer()._shards[0]
        publish = shard.publish

        async def counted(channel, message):
            publishes.append(channel)
            await publish(channel, message)

        shard.publish = counted
        send_elsewhere = doorbell.announce_now(["job-11"], {"type": "log.parts", "n": 3})
        got_here = here._get_layer().channels[mine].get_nowait()  # no await: it is there already
        assert publishes == []  # (a receive cancelled by a timeout would leave the group: no waiting here)
        await send_elsewhere()
        got_there = await asyncio.wait_for(elsewhere.receive(theirs), 5)
        with pytest.raises(TimeoutError):  # this process's consumer got it once
            await asyncio.wait_for(here.receive(mine), 0.3)
        await here.flush()
        await elsewhere.flush()
        return got_here, got_there, len(publishes)

    assert asyncio.run(scenario()) == ({"type": "log.parts", "n": 3}, {"type": "log.parts", "n": 3}, 1)


def test_a_frame_published_without_a_tag_by_a_process_of_the_previous_release_still_arrives():
    async def scenario():
        here = layer(10)
        mine = await here.new_channel()
        await here.group_add("job-10", mine)
        await asyncio.sleep(0.1)
        client = redis.asyncio.from_url(settings.REDIS_URL)
        await client.publish(here.redis_channel("job-10"), here.serialize({"type": "log.parts", "n": 2}))
        await client.aclose()
        got = await asyncio.wait_for(here.receive(mine), 5)
        await here.flush()
        return got

    assert asyncio.run(scenario()) == {"type": "log.parts", "n": 2}
