"""The queues buildboard knows of: named by jobs, by workers' heartbeats, or by staff's queue settings.

Asked by accounts when staff mint a worker token, so a token is never bound to a queue nobody runs."""

from jobs import queries as job_queries

from .models import QueueSettings, Worker


def known_queues() -> set[str]:
    return (job_queries.queue_names()
            | set(QueueSettings.objects.values_list("queue", flat=True))
            | set(Worker.objects.values_list("queue", flat=True).distinct()))
