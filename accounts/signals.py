"""Any saved or deleted token (the admin, a script, the UI) makes every process forget its cached tokens."""

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from .models import ApiToken
from .tokens import bump_generation


@receiver([post_save, post_delete], sender=ApiToken)
def token_changed(sender, instance, **kwargs) -> None:
    if not kwargs.get("created"):
        bump_generation()
