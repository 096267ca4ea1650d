"""Components, incidents, updates, postmortems, maintenance and subscribers of the public status page.

Every public object carries a 12-character `code`: the id Statuspage clients see and the one in URLs,
so database ids and unpublished drafts cannot be enumerated."""

import secrets
from datetime import datetime

from django.conf import settings
from django.db import models
from django.db.models import F
from django.urls import reverse
from django.utils import timezone

CODE_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(12))


def new_secret() -> str:
    return secrets.token_urlsafe(32)


class ComponentStatus(models.TextChoices):
    OPERATIONAL = "operational", "Operational"
    DEGRADED_PERFORMANCE = "degraded_performance", "Degraded performance"
    PARTIAL_OUTAGE = "partial_outage", "Partial outage"
    MAJOR_OUTAGE = "major_outage", "Major outage"
    UNDER_MAINTENANCE = "under_maintenance", "Under maintenance"


# How bad a status is, for "worst of" questions (a day's colour, the overall banner).
SEVERITY = {
    ComponentStatus.OPERATIONAL: 0,
    ComponentStatus.UNDER_MAINTENANCE: 1,
    ComponentStatus.DEGRADED_PERFORMANCE: 2,
    ComponentStatus.PARTIAL_OUTAGE: 3,
    ComponentStatus.MAJOR_OUTAGE: 4,
}


class IncidentStatus(models.TextChoices):
    INVESTIGATING = "investigating", "Investigating"
    IDENTIFIED = "identified", "Identified"
    MONITORING = "monitoring", "Monitoring"
    RESOLVED = "resolved", "Resolved"
    POSTMORTEM = "postmortem", "Postmortem"


RESOLVED_STATES = (IncidentStatus.RESOLVED, IncidentStatus.POSTMORTEM)
# What staff may pick when posting an update; `postmortem` is set by publishing a postmortem.
UPDATE_STATUSES = [c for c in IncidentStatus.choices if c[0] != IncidentStatus.POSTMORTEM]


class Impact(models.TextChoices):
    NONE = "none", "None"
    MINOR = "minor", "Minor"
    MAJOR = "major", "Major"
    CRITICAL = "critical", "Critical"


class MaintenanceStatus(models.TextChoices):
    SCHEDULED = "scheduled", "Scheduled"
    IN_PROGRESS = "in_progress", "In progress"
    VERIFYING = "verifying", "Verifying"
    COMPLETED = "completed", "Completed"


MAINTENANCE_ACTIVE_STATES = (MaintenanceStatus.IN_PROGRESS, MaintenanceStatus.VERIFYING)


class StatusPageState(models.Model):
    """One row: a sequence bumped in the same transaction as any public change.

    Cached pages are keyed by it, so a commit invalidates them; live frames carry it, so clients
    can tell whether what they show is current."""

    seq = models.PositiveBigIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"status page at seq {self.seq}"

    @classmethod
    def current(cls) -> "StatusPageState":
        state = cls.objects.filter(pk=1).first()
        return state if state is not None else cls(pk=1)

    @classmethod
    def bump(cls) -> None:
        now = timezone.now()
        if not cls.objects.filter(pk=1).update(seq=F("seq") + 1, updated_at=now):
            cls.objects.get_or_create(pk=1, defaults={"seq": 1, "updated_at": now})

    @property
    def key(self) -> str:
        # updated_at too: a test database rolled back to seq 0 must not meet pages cached before.
        return f"{self.seq}.{self.updated_at.timestamp():.6f}"


class ComponentGroup(models.Model):
    code = models.CharField(max_length=12, unique=True, default=new_code, editable=False)
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    position = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True,
                                   related_name="+")

    class Meta:
        ordering = ["position", "name"]

    def __str__(self) -> str:
        return self.name


class ComponentQuerySet(models.QuerySet):
    def for_queues(self, queues: list[str]) -> "ComponentQuerySet":
        """Components that depend on any of these worker queues (see Component.queues)."""
        wanted = {q.strip() for q in queues if q.strip()}
        ids = [c.pk for c in self.exclude(queues="") if wanted & set(c.queue_list)]
        return self.filter(pk__in=ids)


class Component(models.Model):
    code = models.CharField(max_length=12, unique=True, default=new_code, editable=False)
    group = models.ForeignKey(ComponentGroup, models.SET_NULL, null=True, blank=True, related_name="components")
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    position = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=24, choices=ComponentStatus.choices, default=ComponentStatus.OPERATIONAL)
    show_uptime = models.BooleanField(default=True, help_text="Show the 90-day uptime bar on the status page.")
    only_show_if_degraded = models.BooleanField(default=False)
    queues = models.CharField(
        max_length=500, blank=True,
        help_text="Comma-separated worker queues this component depends on, e.g. builds.linux, builds.mac. "
                  "Fleet alerts about these queues draft incidents affecting this component.")
    start_date = models.DateField(null=True, blank=True, help_text="Uptime is counted from this day.")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True,
                                   related_name="+")

    objects = ComponentQuerySet.as_manager()

    class Meta:
        ordering = ["position", "name"]

    def __str__(self) -> str:
        return self.name

    @property
    def queue_list(self) -> list[str]:
        return [q.strip() for q in self.queues.split(",") if q.strip()]

    @property
    def is_visible(self) -> bool:
        return not self.only_show_if_degraded or self.status != ComponentStatus.OPERATIONAL

    def set_status(self, status: str, *, at: datetime | None = None, by=None, incident=None,
                   maintenance=None) -> dict | None:
        """Change status and keep the change in the history. Returns the change as Statuspage's
        affected_components entry, or None if the status was already `status`."""
        if status == self.status:
            return None
        old = self.status
        at = at or timezone.now()
        ComponentStatusChange.objects.create(component=self, old_status=old, new_status=status, at=at,
                                             created_by=by, incident=incident, maintenance=maintenance)
        self.status = status
        self.save(update_fields=["status", "updated_at"])
        return {"code": self.code, "name": self.name, "old_status": old, "new_status": status}


class ComponentStatusChange(models.Model):
    """Every status a component has had and when: the source of the uptime bars."""

    component = models.ForeignKey(Component, models.CASCADE, related_name="changes")
    old_status = models.CharField(max_length=24, blank=True)
    new_status = models.CharField(max_length=24, choices=ComponentStatus.choices)
    at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True,
                                   related_name="+")
    incident = models.ForeignKey("Incident", models.SET_NULL, null=True, blank=True, related_name="+")
    maintenance = models.ForeignKey("Maintenance", models.SET_NULL, null=True, blank=True, related_name="+")

    class Meta:
        indexes = [models.Index(fields=["component", "at"])]
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.component_id}: {self.old_status} -> {self.new_status} at {self.at:%Y-%m-%d %H:%M}"


class IncidentQuerySet(models.QuerySet):
    def public(self) -> "IncidentQuerySet":
        return self.filter(published_at__isnull=False)

    def unresolved(self) -> "IncidentQuerySet":
        return self.exclude(status__in=RESOLVED_STATES)


class Incident(models.Model):
    code = models.CharField(max_length=12, unique=True, default=new_code, editable=False)
    name = models.CharField(max_length=200)
    status = models.CharField(max_length=16, choices=IncidentStatus.choices, default=IncidentStatus.INVESTIGATING)
    impact = models.CharField(max_length=8, choices=Impact.choices, default=Impact.MINOR)
    components = models.ManyToManyField(Component, blank=True, related_name="incidents")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(default=timezone.now)
    monitoring_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    # A draft (e.g. from a fleet alert) is invisible to the public until staff publish it.
    published_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True,
                                   related_name="+")

    objects = IncidentQuerySet.as_manager()

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["published_at", "-started_at"])]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("incidents-incident", args=[self.code])

    @property
    def is_resolved(self) -> bool:
        return self.status in RESOLVED_STATES

    @property
    def is_published(self) -> bool:
        return self.published_at is not None

    @property
    def shortlink(self) -> str:
        return settings.SITE_ROOT + self.get_absolute_url()

    def published_postmortem(self) -> "Postmortem | None":
        pm = getattr(self, "postmortem", None)
        return pm if pm is not None and pm.published_at else None

    def record_status(self, status: str, at: datetime) -> None:
        """Move to `status` at `at` and stamp the times Statuspage reports."""
        self.status = status
        if status == IncidentStatus.MONITORING and self.monitoring_at is None:
            self.monitoring_at = at
        if status in RESOLVED_STATES and self.resolved_at is None:
            self.resolved_at = at
        if status not in RESOLVED_STATES:
            self.resolved_at = None
        self.updated_at = timezone.now()


class IncidentUpdate(models.Model):
    code = models.CharField(max_length=12, unique=True, default=new_code, editable=False)
    incident = models.ForeignKey(Incident, models.CASCADE, related_name="updates")
    status = models.CharField(max_length=16, choices=IncidentStatus.choices)
    body = models.TextField()
    display_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    # Statuspage's shape: [{code, name, old_status, new_status}], as they were when posted.
    affected_components = models.JSONField(default=list, blank=True)
    deliver_notifications = models.BooleanField(default=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True,
                                   related_name="+")

    class Meta:
        ordering = ["-display_at", "-id"]

    def __str__(self) -> str:
        return f"{self.get_status_display()} at {self.display_at:%Y-%m-%d %H:%M}"


class Postmortem(models.Model):
    incident = models.OneToOneField(Incident, models.CASCADE, related_name="postmortem")
    body = models.TextField()
    published_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True,
                                   related_name="+")
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True,
                                   related_name="+")

    def __str__(self) -> str:
        return f"Postmortem of {self.incident_id}"

    @property
    def is_draft(self) -> bool:
        return self.published_at is None


class Maintenance(models.Model):
    code = models.CharField(max_length=12, unique=True, default=new_code, editable=False)
    name = models.CharField(max_length=200)
    status = models.CharField(max_length=16, choices=MaintenanceStatus.choices, default=MaintenanceStatus.SCHEDULED)
    components = models.ManyToManyField(Component, blank=True, related_name="maintenances")
    scheduled_for = models.DateTimeField()
    scheduled_until = models.DateTimeField()
    auto_transition = models.BooleanField(
        default=True, help_text="Start and complete automatically at the scheduled times.")
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True,
                                   related_name="+")

    class Meta:
        ordering = ["scheduled_for", "id"]
        verbose_name_plural = "maintenance"

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("incidents-maintenance", args=[self.code])

    @property
    def shortlink(self) -> str:
        return settings.SITE_ROOT + self.get_absolute_url()

    @property
    def is_active(self) -> bool:
        return self.status in MAINTENANCE_ACTIVE_STATES


class MaintenanceUpdate(models.Model):
    code = models.CharField(max_length=12, unique=True, default=new_code, editable=False)
    maintenance = models.ForeignKey(Maintenance, models.CASCADE, related_name="updates")
    status = models.CharField(max_length=16, choices=MaintenanceStatus.choices)
    body = models.TextField()
    display_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    affected_components = models.JSONField(default=list, blank=True)
    deliver_notifications = models.BooleanField(default=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True,
                                   related_name="+")

    class Meta:
        ordering = ["-display_at", "-id"]

    def __str__(self) -> str:
        return f"{self.get_status_display()} at {self.display_at:%Y-%m-%d %H:%M}"


class IncidentTemplate(models.Model):
    """A reusable starting point for opening an incident."""

    name = models.CharField(max_length=100, unique=True)
    title = models.CharField(max_length=200)
    status = models.CharField(max_length=16, choices=UPDATE_STATUSES, default=IncidentStatus.INVESTIGATING)
    impact = models.CharField(max_length=8, choices=Impact.choices, default=Impact.MINOR)
    body = models.TextField()
    components = models.ManyToManyField(Component, blank=True, related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True,
                                   related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class SubscriberKind(models.TextChoices):
    EMAIL = "email", "Email"
    WEBHOOK = "webhook", "Webhook"
    SLACK = "slack", "Slack incoming webhook"


URL_KINDS = (SubscriberKind.WEBHOOK, SubscriberKind.SLACK)


class SubscriberQuerySet(models.QuerySet):
    def active(self) -> "SubscriberQuerySet":
        return self.filter(confirmed_at__isnull=False, unsubscribed_at__isnull=True)

    def following(self, incident_id: int | None) -> "SubscriberQuerySet":
        """Subscribers to the whole page, plus (for an incident's news) those following that incident."""
        if incident_id is None:
            return self.filter(incident__isnull=True)
        return self.filter(models.Q(incident__isnull=True) | models.Q(incident_id=incident_id))

    def interested_in(self, component_ids: list[int]) -> "SubscriberQuerySet":
        """Subscribers to everything, or to any of these components."""
        everything = self.filter(components__isnull=True)
        some = self.filter(components__in=component_ids)
        return self.filter(pk__in=everything.union(some).values("pk")) if component_ids else everything


class Subscriber(models.Model):
    code = models.CharField(max_length=12, unique=True, default=new_code, editable=False)
    kind = models.CharField(max_length=8, choices=SubscriberKind.choices)
    email = models.EmailField(blank=True)
    url = models.URLField(blank=True, max_length=500)
    # The HMAC key for webhook signatures; it must be kept in clear to sign, and is shown once.
    secret = models.CharField(max_length=64, default=new_secret, editable=False)
    components = models.ManyToManyField(Component, blank=True, related_name="subscribers",
                                        help_text="None means every component.")
    incident = models.ForeignKey(Incident, models.CASCADE, null=True, blank=True, related_name="subscribers",
                                 help_text="Only this incident's updates; empty: the whole page.")
    allow_private = models.BooleanField(
        default=False, help_text="Staff allowed a loopback, private or link-local webhook target.")
    created_at = models.DateTimeField(default=timezone.now)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    confirmation_sent_at = models.DateTimeField(null=True, blank=True)
    unsubscribed_at = models.DateTimeField(null=True, blank=True)
    last_delivery_at = models.DateTimeField(null=True, blank=True)
    last_delivery_status = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True,
                                   related_name="+")

    objects = SubscriberQuerySet.as_manager()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(models.Q(kind="email") & ~models.Q(email=""))
                | (models.Q(kind__in=["webhook", "slack"]) & ~models.Q(url="")),
                name="subscriber_has_address"),
        ]

    def __str__(self) -> str:
        return self.email or self.url

    @property
    def is_url(self) -> bool:
        return self.kind in URL_KINDS
