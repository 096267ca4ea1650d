"""The fleet: workers' heartbeats, version history, grouped errors, per-queue rollout settings, alerts.

These models were born in the jobs app and keep its tables (Meta.db_table), so moving them here
copied no data; see migrations/0001_initial.py."""

import hashlib
import math
import re
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone


class WorkerState(models.TextChoices):
    STARTING = "starting"
    IN_SERVICE = "in_service"
    DRAINING = "draining"
    STOPPED = "stopped"


# A worker may count toward a queue's capacity only in these states (and while it is not silent).
SERVING_STATES = (WorkerState.IN_SERVICE,)


class WorkerQuerySet(models.QuerySet):
    def alive(self, now) -> "WorkerQuerySet":
        """Heard from within the heartbeat timeout."""
        return self.filter(last_seen_at__gte=now - timedelta(seconds=settings.FLEET_HEARTBEAT_TIMEOUT))

    def silent(self, now) -> "WorkerQuerySet":
        """Not stopped, yet not heard from within the heartbeat timeout."""
        cutoff = now - timedelta(seconds=settings.FLEET_HEARTBEAT_TIMEOUT)
        return self.filter(last_seen_at__lt=cutoff).exclude(state=WorkerState.STOPPED)

    def in_service(self, now) -> "WorkerQuerySet":
        return self.alive(now).filter(state__in=SERVING_STATES)

    def stuck_starting(self, now, minutes: float) -> "WorkerQuerySet":
        return self.alive(now).filter(state=WorkerState.STARTING, state_since__lt=now - timedelta(minutes=minutes))

    def recent(self, now) -> "WorkerQuerySet":
        """Worth showing: seen within FLEET_FORGET_AFTER hours."""
        return self.filter(last_seen_at__gte=now - timedelta(hours=settings.FLEET_FORGET_AFTER_HOURS))


class Worker(models.Model):
    """One worker instance, as its heartbeats describe it."""

    name = models.CharField(max_length=255, unique=True)
    queue = models.CharField(max_length=100, db_index=True)
    version = models.CharField(max_length=64)
    backend = models.CharField(max_length=64, blank=True)
    host = models.CharField(max_length=255, blank=True)
    pool_size = models.PositiveIntegerField(default=0)
    busy = models.PositiveIntegerField(default=0)
    state = models.CharField(max_length=16, choices=WorkerState.choices, default=WorkerState.STARTING)
    state_since = models.DateTimeField(default=timezone.now)
    first_seen_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now, db_index=True)
    drain_requested = models.BooleanField(default=False, help_text="Staff asked this one instance to drain.")
    image = models.CharField(max_length=255, blank=True, help_text="registry/repository:tag, if the worker says.")
    heartbeats = models.PositiveBigIntegerField(default=0)
    seq = models.PositiveIntegerField(default=0)

    objects = WorkerQuerySet.as_manager()

    class Meta:
        db_table = "jobs_worker"  # every fleet model keeps the table it had in the jobs app
        ordering = ["queue", "name"]

    def __str__(self) -> str:
        return self.name

    def is_silent(self, now) -> bool:
        return self.state != WorkerState.STOPPED and (
            now - self.last_seen_at > timedelta(seconds=settings.FLEET_HEARTBEAT_TIMEOUT)
        )

    def is_stuck_starting(self, now, minutes: float) -> bool:
        return self.state == WorkerState.STARTING and now - self.state_since > timedelta(minutes=minutes)

    def apply_heartbeat(self, beat: dict, now) -> tuple[bool, "WorkerVersionChange | None"]:
        """Fold one heartbeat into this locked worker and save it.

        Returns whether anything an observer would notice changed, and the version change if any."""
        material = ("queue", "version", "backend", "host", "pool_size", "busy", "state", "image")
        first = self.heartbeats == 0
        before = {f: getattr(self, f) for f in material}
        change = None
        if not first and beat["version"] != self.version:
            change = WorkerVersionChange(worker=self, from_version=self.version, to_version=beat["version"], at=now)
        if first or beat["state"] != self.state:
            self.state_since = now
        was_silent = not first and self.is_silent(now)
        for f in material:
            setattr(self, f, beat.get(f, "") if f == "image" else beat[f])
        self.last_seen_at = now
        self.heartbeats += 1
        changed = first or was_silent or before != {f: getattr(self, f) for f in material}
        if changed:
            self.seq += 1
        self.save()
        if change is not None:
            change.save()
        return changed, change


class WorkerVersionChange(models.Model):
    worker = models.ForeignKey(Worker, models.CASCADE, related_name="version_changes")
    from_version = models.CharField(max_length=64)
    to_version = models.CharField(max_length=64)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "jobs_workerversionchange"
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.worker_id}: {self.from_version} → {self.to_version}"


# Variable parts of error messages, replaced in this order so that a UUID is not first eaten as a hash.
_SIGNATURE_RULES = [
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I), "<uuid>"),
    (re.compile(r"\bsha256:[0-9a-f]{16,}\b", re.I), "<hash>"),
    (re.compile(r"\b[0-9a-f]{7,}\b", re.I), "<hash>"),
    (re.compile(r"(?<=:)v?\d+(?:\.\d+)+[\w.+-]*"), "<tag>"),  # image tags like :v2.5.0 or :1.2-rc1
    (re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?\b"), "<ip>"),
    (re.compile(r"\b[vV]?\d+(?:\.\d+)+\b"), "<n>"),
    (re.compile(r"\d+"), "<n>"),
    (re.compile(r"\s+"), " "),
]


def error_signature(message: str) -> str:
    """The message with its variable parts replaced, so that occurrences of one problem group together."""
    text = message.strip()
    for pattern, replacement in _SIGNATURE_RULES:
        text = pattern.sub(replacement, text)
    return text[:500]


class ErrorSignature(models.Model):
    """Worker errors of one queue that differ only in numbers, hashes, ids or tags."""

    MAX_SAMPLES = 5

    queue = models.CharField(max_length=100)
    digest = models.CharField(max_length=64, help_text="sha256 of the signature, for a short unique key.")
    signature = models.CharField(max_length=500)
    count = models.PositiveBigIntegerField(default=0)
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField(db_index=True)
    samples = models.JSONField(default=list, blank=True, help_text="The latest raw messages with worker and time.")

    class Meta:
        db_table = "jobs_errorsignature"
        constraints = [models.UniqueConstraint(fields=["queue", "digest"], name="errorsignature_unique_digest")]
        ordering = ["-last_seen_at"]

    def __str__(self) -> str:
        return f"{self.queue}: {self.signature}"

    @staticmethod
    def digest_of(signature: str) -> str:
        return hashlib.sha256(signature.encode()).hexdigest()


class WorkerError(models.Model):
    """One reported error occurrence; kept for a while so bursts can be counted over a window."""

    signature = models.ForeignKey(ErrorSignature, models.CASCADE, related_name="occurrences")
    worker = models.ForeignKey(Worker, models.CASCADE, related_name="errors")
    at = models.DateTimeField()
    message = models.CharField(max_length=2000)

    class Meta:
        db_table = "jobs_workererror"
        constraints = [
            # A worker resending an error it already reported (same time, same kind) is not a new one.
            models.UniqueConstraint(fields=["worker", "signature", "at"], name="workererror_unique_occurrence"),
        ]
        indexes = [models.Index(fields=["signature", "at"]), models.Index(fields=["at"], name="workererror_at_idx")]
        ordering = ["-at"]

    def __str__(self) -> str:
        return f"{self.worker_id} {self.at:%Y-%m-%d %H:%M:%S}: {self.message[:60]}"


class QueueSettings(models.Model):
    """What staff want of a queue: the version to run, the capacity to expect, whether to drain it."""

    queue = models.CharField(max_length=100, unique=True)
    desired_version = models.CharField(max_length=64, blank=True)
    desired_version_set_at = models.DateTimeField(null=True, blank=True)
    expected_capacity = models.PositiveIntegerField(default=0, help_text="Job slots in service; 0: no expectation.")
    drain = models.BooleanField(default=False)
    updated_at = models.DateTimeField(default=timezone.now)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True,
                                   related_name="+")

    class Meta:
        db_table = "jobs_queuesettings"
        ordering = ["queue"]
        verbose_name_plural = "queue settings"

    def __str__(self) -> str:
        return self.queue

    @classmethod
    def for_queue(cls, queue: str) -> "QueueSettings":
        return cls.objects.filter(queue=queue).first() or cls(queue=queue)

    def drain_for(self, worker: Worker) -> bool:
        return self.drain or worker.drain_requested


class AlertRule(models.Model):
    """Staff-editable thresholds of one rule kind; the kinds and their evaluation live in fleet/alerts.py."""

    kind = models.CharField(max_length=64, unique=True)
    enabled = models.BooleanField(default=True)
    params = models.JSONField(default=dict, blank=True, help_text="Overrides of the rule's default thresholds.")
    updated_at = models.DateTimeField(default=timezone.now)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True,
                                   related_name="+")

    class Meta:
        db_table = "jobs_alertrule"
        ordering = ["kind"]

    def __str__(self) -> str:
        return self.kind


class AlertState(models.TextChoices):
    FIRING = "firing"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


OPEN_ALERT_STATES = (AlertState.FIRING, AlertState.ACKNOWLEDGED)


class AlertQuerySet(models.QuerySet):
    def open(self) -> "AlertQuerySet":
        return self.filter(state__in=OPEN_ALERT_STATES)


class Alert(models.Model):
    """One occurrence of a rule's condition for one subject (a queue, a version, an error signature)."""

    rule = models.CharField(max_length=64)
    subject = models.CharField(max_length=255)
    state = models.CharField(max_length=16, choices=AlertState.choices, default=AlertState.FIRING)
    title = models.CharField(max_length=255)
    summary = models.TextField(blank=True)
    evidence = models.JSONField(default=dict, blank=True)
    onset_at = models.DateTimeField(null=True, blank=True, help_text="When the evidence says the problem began.")
    fired_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now, help_text="Last evaluation that found the condition.")
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True,
                                        related_name="+")
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolution = models.CharField(max_length=255, blank=True)
    incident_id = models.PositiveIntegerField(null=True, blank=True, help_text="The incident drafted from it.")
    incident_url = models.CharField(max_length=500, blank=True)

    objects = AlertQuerySet.as_manager()

    class Meta:
        db_table = "jobs_alert"
        constraints = [
            models.UniqueConstraint(fields=["rule", "subject"], condition=Q(state__in=["firing", "acknowledged"]),
                                    name="alert_one_open_per_rule_subject"),
        ]
        indexes = [models.Index(fields=["state", "rule"]), models.Index(fields=["-fired_at"])]
        ordering = ["-fired_at", "-id"]

    def __str__(self) -> str:
        return f"{self.rule}[{self.subject}] {self.state}"

    def get_absolute_url(self) -> str:
        return reverse("alerts-detail", args=[self.pk])

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_ALERT_STATES

    @property
    def detection_delay(self) -> timedelta | None:
        """How long after the evidence's onset the alert fired."""
        return self.fired_at - self.onset_at if self.onset_at else None

    def acknowledge(self, user, now) -> bool:
        """firing → acknowledged; False if it was not firing."""
        updated = Alert.objects.filter(pk=self.pk, state=AlertState.FIRING).update(
            state=AlertState.ACKNOWLEDGED, acknowledged_at=now, acknowledged_by=user)
        if updated:
            self.refresh_from_db()
        return bool(updated)

    def resolve(self, now, resolution: str) -> bool:
        """firing/acknowledged → resolved; False if it was already resolved."""
        updated = Alert.objects.filter(pk=self.pk, state__in=OPEN_ALERT_STATES).update(
            state=AlertState.RESOLVED, resolved_at=now, resolution=resolution[:255])
        if updated:
            self.refresh_from_db()
        return bool(updated)


class AlertNotification(models.Model):
    """A notification that went out, so a retried or redelivered task does not send it twice."""

    alert = models.ForeignKey(Alert, models.CASCADE, related_name="notifications")
    channel = models.CharField(max_length=16)  # "webhook" or "email"
    event = models.CharField(max_length=16)  # "firing" or "resolved"
    sent_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "jobs_alertnotification"
        constraints = [models.UniqueConstraint(fields=["alert", "channel", "event"], name="alertnotification_once")]

    def __str__(self) -> str:
        return f"{self.alert_id} {self.event} via {self.channel}"


# Image pulls that fail: the registry has no such tag (the 2017 missing v2.5.0), or refuses it.
IMAGE_PULL_ERROR = re.compile(r"manifest (?:for \S+ )?(?:\S+ )?not found|manifest unknown|pull access denied|"
                              r"repository \S+ not found|ErrImagePull|ImagePullBackOff", re.I)


class VersionSighting(models.Model):
    """What heartbeats showed of one version on one queue: when an instance last served on it, and when one
    last failed to pull its image. Rollout preflight reads it; worker rows alone forget a version once their
    instances move on."""

    queue = models.CharField(max_length=100)
    version = models.CharField(max_length=64)
    image = models.CharField(max_length=255, blank=True)
    last_in_service_at = models.DateTimeField(null=True, blank=True)
    last_pull_error_at = models.DateTimeField(null=True, blank=True)
    last_pull_error = models.CharField(max_length=500, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["queue", "version"], name="versionsighting_unique")]
        ordering = ["queue", "version"]

    def __str__(self) -> str:
        return f"{self.queue}@{self.version}"


class RolloutState(models.TextChoices):
    RUNNING = "running"
    PAUSED = "paused"
    HALTED = "halted"  # a gate fired: rolled back to the previous version automatically
    ABORTED = "aborted"  # staff stopped it: rolled back to the previous version
    COMPLETED = "completed"


ACTIVE_ROLLOUT_STATES = (RolloutState.RUNNING, RolloutState.PAUSED)
FINAL_ROLLOUT_STATES = (RolloutState.HALTED, RolloutState.ABORTED, RolloutState.COMPLETED)
DEFAULT_STAGES = ["1", "10%", "50%", "100%"]
STAGE_PATTERN = re.compile(r"([1-9][0-9]{0,5})(%?)")


def stage_size(stage: str, instances: int) -> int:
    """How many of `instances` run the new version at a stage: "3" is three instances, "10%" a tenth,
    rounded up (at least one)."""
    count, percent = STAGE_PATTERN.fullmatch(stage).groups()
    if percent:
        return min(instances, max(1, math.ceil(int(count) * instances / 100)))
    return min(instances, int(count))


def stages_problem(stages: list[str]) -> str | None:
    """Why a list of stages is not a plan, or None: counts of instances first, then percentages, each
    strictly larger than the one before, ending at 100%."""
    if not stages:
        return "stages must not be empty"
    last, previous = (0, 0), ""
    for stage in stages:
        m = STAGE_PATTERN.fullmatch(stage)
        if m is None:
            return f"stage {stage!r} is neither a number of instances (e.g. 1) nor a percentage (e.g. 10%)"
        key = (1 if m.group(2) else 0, int(m.group(1)))
        if key[0] and key[1] > 100:
            return f"stage {stage!r} is more than 100%"
        if key <= last:
            return f"stages must be increasing: {stage} comes after {previous}"
        last, previous = key, stage
    if stages[-1] != "100%":
        return "the last stage must be 100%"
    return None


def instance_rank(name: str) -> str:
    """A stable place for an instance in every rollout's order: the same instances are canaries on every
    heartbeat and after any restart, with no state kept outside the database."""
    return hashlib.sha256(name.encode()).hexdigest()


class RolloutQuerySet(models.QuerySet):
    def active(self) -> "RolloutQuerySet":
        return self.filter(state__in=ACTIVE_ROLLOUT_STATES)


class Rollout(models.Model):
    """A staged move of one queue from `previous_version` to `version`, gated between and during stages."""

    queue = models.CharField(max_length=100)
    version = models.CharField(max_length=64)
    previous_version = models.CharField(max_length=64)
    stages = models.JSONField(default=list, help_text='e.g. ["1", "10%", "50%", "100%"]')
    soak_minutes = models.FloatField(default=15)
    state = models.CharField(max_length=16, choices=RolloutState.choices, default=RolloutState.RUNNING)
    stage = models.PositiveIntegerField(default=0, help_text="Index into stages of the current stage.")
    stage_started_at = models.DateTimeField(default=timezone.now)
    paused_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True,
                                   related_name="+")
    finished_at = models.DateTimeField(null=True, blank=True)
    reason = models.TextField(blank=True, help_text="Why it halted or was aborted.")
    last_check_at = models.DateTimeField(null=True, blank=True)
    last_gates = models.JSONField(default=dict, blank=True, help_text="The latest gate results.")
    alert = models.ForeignKey(Alert, models.SET_NULL, null=True, blank=True, related_name="+")

    objects = RolloutQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["queue"], condition=Q(state__in=["running", "paused"]),
                                    name="rollout_one_active_per_queue"),
        ]
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.queue} {self.previous_version} → {self.version} ({self.state})"

    def get_absolute_url(self) -> str:
        return reverse("rollouts-detail", args=[self.pk])

    @property
    def is_active(self) -> bool:
        return self.state in ACTIVE_ROLLOUT_STATES

    @property
    def stage_label(self) -> str:
        return self.stages[self.stage] if self.stage < len(self.stages) else ""

    def soak_ends_at(self):
        return self.stage_started_at + timedelta(minutes=self.soak_minutes)

    def chosen(self, names: list[str]) -> set[str]:
        """The instances among `names` (the queue's current instances) that run the new version now."""
        if self.state == RolloutState.COMPLETED:
            return set(names)
        if self.state not in ACTIVE_ROLLOUT_STATES:
            return set()
        ranked = sorted(names, key=instance_rank)
        return set(ranked[: stage_size(self.stage_label, len(ranked))])


class RolloutEvent(models.Model):
    """One line of a rollout's timeline: stages, gate checks with their evidence, and who decided what."""

    class Kind(models.TextChoices):
        STARTED = "started"
        STAGE_STARTED = "stage_started"
        STAGE_FINISHED = "stage_finished"
        GATES = "gates"
        HALTED = "halted"
        PAUSED = "paused"
        RESUMED = "resumed"
        PROMOTED = "promoted"
        ABORTED = "aborted"
        COMPLETED = "completed"

    rollout = models.ForeignKey(Rollout, models.CASCADE, related_name="events")
    at = models.DateTimeField(default=timezone.now)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    stage = models.PositiveIntegerField(default=0)
    actor = models.CharField(max_length=150, help_text="A user name, or 'gates' for the automatic checks.")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True, related_name="+")
    message = models.TextField(blank=True)
    evidence = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["rollout", "at"])]

    def __str__(self) -> str:
        return f"{self.rollout_id} {self.at:%H:%M:%S} {self.kind}"
