"""Telling open websockets that a user's roles changed, so they re-check what that user may see.

Consumers join the user's access group on connect; a change is one frame per affected user, after
the commit, and each consumer re-reads the user's grants once (never once per frame it forwards)."""

from buildboard.lib.doorbell import announce_on_commit


def access_group(user_id: int) -> str:
    return f"access-user-{user_id}"


def announce_access_changed(user_ids) -> None:
    ids = sorted(set(user_ids))
    if not ids:
        return

    # A lost doorbell: the socket keeps its old view until it reconnects.
    announce_on_commit([access_group(user_id) for user_id in ids], {"type": "access.changed"})
