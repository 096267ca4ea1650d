"""The audit log: one function records an action by a user or a token."""

from .models import ApiToken, AuditEntry


def record(actor, action: str, *, organization: str = "", target: str, detail: str = "") -> AuditEntry:
    """Record that `actor` (a user or an ApiToken) did `action` to `target` in `organization` ("" site-wide)."""
    if isinstance(actor, ApiToken):
        user, label = actor.user if actor.user_id else None, f"token {actor.name}"
    else:
        user = actor if actor is not None and actor.is_authenticated else None
        label = user.get_username() if user else "system"
    return AuditEntry.objects.create(actor=user, actor_label=label[:150], organization=organization,
                                     action=action, target=target[:255], detail=detail[:500])
