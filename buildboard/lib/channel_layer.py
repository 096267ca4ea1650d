"""The channel layer: channels_redis's pub/sub layer, with a bounded queue per consumer.

Why pub/sub: a frame to a job's six viewers in one web process is one PUBLISH that the process receives
once and hands to its six consumers in memory. channels_redis's list-based layer stores one copy per
consumer and the process pops them one round trip at a time: measured on bench/tail, 0.8 ms to send a
frame against 0.25 ms, and the last of six viewers waited behind five round trips. Frames are doorbells
(buildboard/lib/doorbell.py): a lost one costs the page a refetch, never data, so pub/sub's "delivered to
whoever listens now" is what the live pages need.

What channels_redis leaves open: a consumer's queue has no bound, so a viewer that stops reading would
hold every frame sent to it in memory. Here each queue holds CHANNEL_CAPACITY frames; beyond that new
frames for it are dropped (logged), as the list-based layer's capacity did, and the page refetches the gap
when it reads again."""

import asyncio
import logging

from channels_redis.pubsub import RedisPubSubChannelLayer, RedisPubSubLoopLayer, RedisSingleShardConnection
from channels_redis.utils import _wrap_close, decode_hosts

log = logging.getLogger(__name__)


class _Shard(RedisSingleShardConnection):
    def _receive_message(self, message):
        if message is None:
            return
        name = message["channel"]
        name = name.decode() if isinstance(name, bytes) else name
        layer = self.channel_layer
        targets = [name] if name in layer.channels else layer.groups.get(name, ())
        for channel in targets:
            queue = layer.channels.get(channel)
            if queue is None:
                continue
            try:
                queue.put_nowait(message["data"])
            except asyncio.QueueFull:
                log.warning("channel %s is full (%d frames): dropping a frame; its page refetches", channel,
                            queue.maxsize)


class _LoopLayer(RedisPubSubLoopLayer):
    def __init__(self, *args, capacity: int = 1000, **kwargs):
        super().__init__(*args, **kwargs)
        self.capacity = capacity
        self._shards = [_Shard(host, self) for host in decode_hosts(kwargs.get("hosts"))]

    async def _subscribe_to_channel(self, channel):
        self.channels[channel] = asyncio.Queue(maxsize=self.capacity)
        await self._get_shard(channel).subscribe(channel)


class ChannelLayer(RedisPubSubChannelLayer):
    """settings.CHANNEL_LAYERS' backend: CONFIG takes channels_redis's pub/sub options plus `capacity`."""

    def redis_channel(self, group: str) -> str:
        """The Redis channel a group's frames are published on (PUBSUB NUMSUB of it: who listens)."""
        return f"{self._kwargs.get('prefix', 'asgi')}__group__{group}"

    def _get_layer(self):
        loop = asyncio.get_running_loop()
        layer = self._layers.get(loop)
        if layer is None:
            layer = self._layers[loop] = _LoopLayer(*self._args, **self._kwargs, channel_layer=self)
            _wrap_close(self, loop)
        return layer
