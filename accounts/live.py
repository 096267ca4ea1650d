"""Telling open websockets that a user's roles changed, so they re-check what that user may see.

Consumers join the user's access group on connect; a change is one frame per affected user, after
the commit, and each consumer re-reads the user's grants once (never once per frame it forwards)."""

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

log = logging.getLogger(__name__)


def access_group(user_id: int) -> str:
    return f"access-user-{user_id}"


def announce_access_changed(user_ids) -> None:
    ids = sorted(set(user_ids))
    if not ids:
        return

    def send() -> None:
        layer = get_channel_layer()
        if layer is None:
            return

        async def send_all() -> None:
            for user_id in ids:
                await layer.group_send(access_group(user_id), {"type": "access.changed"})

        try:
            async_to_sync(send_all)()
        except Exception:  # a lost doorbell: the socket keeps its old view until it reconnects
            log.exception("access change announcement failed")

    transaction.on_commit(send)
