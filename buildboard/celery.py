"""Celery application, configured from Django settings (CELERY_* names)."""

import os

from celery import Celery
from celery.signals import beat_init, worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "buildboard.settings")

app = Celery("buildboard")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
@beat_init.connect
def _check_redis_persistence(**kwargs) -> None:
    """Buffered log parts and queued tasks live in Redis: refuse (or warn) if it would lose them."""
    from jobs.ingest import check_persistence

    check_persistence()
