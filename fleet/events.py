"""The fleet page's doorbell: after a commit, "something changed"; the page refetches its fragment."""

from buildboard.lib.doorbell import announce_on_commit

FLEET_GROUP = "fleet"


def announce_fleet(reason: str, **details) -> None:
    announce_on_commit([FLEET_GROUP], {"type": "fleet.changed", "reason": reason, **details})
