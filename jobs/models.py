"""Repositories, builds, jobs, log parts and worker API tokens."""

import hashlib
import re
import secrets
import time
from datetime import timedelta

from django.conf import settings
from django.db import models, transaction
from django.db.models import F, Max, Q
from django.urls import reverse
from django.utils import timezone

from .states import (
    ACTIVE_STATES,
    FINAL_STATES,
    TIMESTAMP_FOR,
    BuildState,
    JobState,
    build_state_from,
    is_inconsistent,
    next_state,
)

EXIT_LINE = re.compile(r"Done\. Your build exited with (-?\d+)\.")
TRUNCATION_MARKER = "\n\x1b[33;1m[buildboard] Log truncated: it exceeded the {limit} limit.\x1b[0m\n"


def _human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:g} {unit}" if unit == "B" else f"{n:.0f} {unit}"
        n /= 1024
    return str(n)


class RepositoryQuerySet(models.QuerySet):
    def visible_to(self, user) -> "RepositoryQuerySet":
        if user.is_authenticated and user.is_staff:
            return self
        return self.filter(private=False)


class Repository(models.Model):
    owner = models.CharField(max_length=100)
    name = models.CharField(max_length=100)
    private = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)

    objects = RepositoryQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["owner", "name"], name="repository_unique_slug")]
        ordering = ["owner", "name"]
        verbose_name_plural = "repositories"

    def __str__(self) -> str:
        return self.slug

    def get_absolute_url(self) -> str:
        return reverse("jobs-repository", args=[self.owner, self.name])

    @property
    def slug(self) -> str:
        return f"{self.owner}/{self.name}"

    def visible_to(self, user) -> bool:
        return not self.private or (user.is_authenticated and user.is_staff)

    def next_build_number(self) -> int:
        top = self.builds.aggregate(top=Max("number"))["top"]
        return (top or 0) + 1


class BuildQuerySet(models.QuerySet):
    def visible_to(self, user) -> "BuildQuerySet":
        if user.is_authenticated and user.is_staff:
            return self
        return self.filter(repository__private=False)


class Build(models.Model):
    repository = models.ForeignKey(Repository, models.CASCADE, related_name="builds")
    number = models.PositiveIntegerField()
    branch = models.CharField(max_length=255)
    commit = models.CharField(max_length=64)
    message = models.TextField(blank=True)
    author = models.CharField(max_length=255, blank=True)
    event = models.CharField(max_length=32, default="push")
    state = models.CharField(max_length=16, choices=BuildState.choices, default=BuildState.CREATED)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Bumped on every change, so live clients can tell stale frames from fresh ones.
    seq = models.PositiveIntegerField(default=0)

    objects = BuildQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["repository", "number"], name="build_unique_number")]
        indexes = [models.Index(fields=["-created_at"]), models.Index(fields=["repository", "branch", "-number"])]
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.repository.slug}#{self.number}"

    def get_absolute_url(self) -> str:
        return reverse("jobs-build", args=[self.pk])

    @property
    def duration(self) -> timedelta | None:
        if self.started_at and self.finished_at:
            return self.finished_at - self.started_at
        return None

    def refresh_state(self) -> bool:
        """Recompute state and times from the jobs; call inside the transaction that changed them.

        Returns whether anything changed."""
        jobs = list(self.jobs.values("state", "allow_failure", "started_at", "finished_at"))
        required = [j["state"] for j in jobs if not j["allow_failure"]] or [j["state"] for j in jobs]
        state = build_state_from(required)
        started = [j["started_at"] for j in jobs if j["started_at"]]
        started_at = min(started) if started else None
        all_done = jobs and all(j["state"] in FINAL_STATES for j in jobs)
        finished_at = max((j["finished_at"] for j in jobs if j["finished_at"]), default=None) if all_done else None
        if state == self.state and started_at == self.started_at and finished_at == self.finished_at:
            return False
        self.state, self.started_at, self.finished_at = state, started_at, finished_at
        self.seq += 1
        self.save(update_fields=["state", "started_at", "finished_at", "seq"])
        return True


class JobQuerySet(models.QuerySet):
    def visible_to(self, user) -> "JobQuerySet":
        if user.is_authenticated and user.is_staff:
            return self
        return self.filter(build__repository__private=False)


class Job(models.Model):
    build = models.ForeignKey(Build, models.CASCADE, related_name="jobs")
    number = models.CharField(max_length=32)
    config = models.JSONField(default=dict, blank=True)
    queue = models.CharField(max_length=100, default="builds.linux")
    allow_failure = models.BooleanField(default=False)
    state = models.CharField(max_length=16, choices=JobState.choices, default=JobState.QUEUED)
    attempt = models.PositiveIntegerField(default=1)
    exit_code = models.IntegerField(null=True, blank=True)
    exit_code_from_log = models.BooleanField(default=False)
    inconsistent = models.BooleanField(default=False)
    worker = models.CharField(max_length=255, blank=True)
    worker_version = models.CharField(max_length=64, blank=True)
    queued_at = models.DateTimeField(default=timezone.now)
    received_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    last_activity_at = models.DateTimeField(default=timezone.now)
    cancel_requested = models.BooleanField(default=False)
    # Why buildboard itself ended the job (a stale job errored by the alert sweep), shown to people.
    error_reason = models.CharField(max_length=255, blank=True)
    # Log bookkeeping for the current attempt, maintained by the ingestion tasks.
    log_bytes = models.PositiveBigIntegerField(default=0)
    log_persisted_through = models.IntegerField(default=-1)
    log_final_number = models.IntegerField(null=True, blank=True)
    log_truncated = models.BooleanField(default=False)
    seq = models.PositiveIntegerField(default=0)

    objects = JobQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["build", "number"], name="job_unique_number")]
        indexes = [models.Index(fields=["state", "queue"]), models.Index(fields=["worker_version", "finished_at"]),
                   # the alert rules look at jobs finished within a window, every 30 s
                   models.Index(fields=["finished_at"], name="job_finished_at_idx")]
        ordering = ["build", "id"]

    def __str__(self) -> str:
        return f"{self.build.repository.slug} job {self.number}"

    def get_absolute_url(self) -> str:
        return reverse("jobs-detail", args=[self.pk])

    @property
    def is_finished(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def log_complete(self) -> bool:
        return self.log_truncated or (
            self.log_final_number is not None and self.log_persisted_through >= self.log_final_number
        )

    @property
    def duration(self) -> timedelta | None:
        if self.started_at:
            return (self.finished_at or timezone.now()) - self.started_at
        return None

    @property
    def display_state(self) -> str:
        if self.cancel_requested and not self.is_finished:
            return "canceling"
        return self.state

    def apply_report(self, *, state: str | None, at, worker: str = "", worker_version: str = "",
                     exit_code: int | None = None) -> bool:
        """Fold one worker report into this (locked) job. Returns whether anything changed."""
        before = (self.state, self.exit_code, self.worker, self.worker_version, self.received_at,
                  self.started_at, self.finished_at)
        if state:
            self.state = next_state(self.state, state)
            field = TIMESTAMP_FOR[JobState(state)]
            if getattr(self, field) is None:
                setattr(self, field, at)
        if worker and not self.worker:
            self.worker = worker
        if worker_version and not self.worker_version:
            self.worker_version = worker_version
        if exit_code is not None and (self.exit_code is None or self.exit_code_from_log):
            self.exit_code, self.exit_code_from_log = exit_code, False
        self.inconsistent = self.state in FINAL_STATES and is_inconsistent(self.state, self.exit_code)
        self.last_activity_at = max(self.last_activity_at, timezone.now())
        changed = before != (self.state, self.exit_code, self.worker, self.worker_version, self.received_at,
                             self.started_at, self.finished_at)
        if changed:
            self.seq += 1
        self.save()
        return changed

    def restart(self) -> bool:
        """Start the next attempt of a finished job. Returns False if it is not finished."""
        updated = Job.objects.filter(pk=self.pk, state__in=FINAL_STATES).update(
            attempt=F("attempt") + 1,
            state=JobState.QUEUED,
            exit_code=None,
            exit_code_from_log=False,
            inconsistent=False,
            worker="",
            worker_version="",
            queued_at=timezone.now(),
            received_at=None,
            started_at=None,
            finished_at=None,
            last_activity_at=timezone.now(),
            cancel_requested=False,
            error_reason="",
            log_bytes=0,
            log_persisted_through=-1,
            log_final_number=None,
            log_truncated=False,
            seq=F("seq") + 1,
        )
        if updated:
            self.refresh_from_db()
        return bool(updated)

    def request_cancel(self) -> bool:
        """Ask the worker to stop; it learns through its next API response. Returns False if finished."""
        updated = Job.objects.filter(pk=self.pk, state__in=ACTIVE_STATES).update(
            cancel_requested=True, seq=F("seq") + 1
        )
        if updated:
            self.refresh_from_db()
        return bool(updated)

    def store_log_parts(self, attempt: int, parts: list[dict]) -> list["LogPart"]:
        """Store new parts of a (locked) job's current attempt, within the log cap.

        Duplicates are skipped; returns the parts actually stored, in number order."""
        # One query for every stored number past the contiguous prefix tells both which incoming
        # parts are duplicates and how far the prefix reaches once this batch is in.
        beyond = set(
            LogPart.objects.filter(job=self, attempt=attempt, number__gt=self.log_persisted_through)
            .values_list("number", flat=True)
        )
        fresh: dict[int, dict] = {}
        for part in parts:
            if part["number"] > self.log_persisted_through and part["number"] not in beyond:
                fresh.setdefault(part["number"], part)
        stored = []
        for number in sorted(fresh):
            part = fresh[number]
            size = len(part["content"].encode())
            if self.log_truncated or self.log_bytes + size > settings.LOG_MAX_BYTES:
                self.log_truncated = True
                break
            self.log_bytes += size
            stored.append(LogPart(job=self, attempt=attempt, number=number, content=part["content"],
                                  final=bool(part.get("final"))))
            if part.get("final") and self.log_final_number is None:
                self.log_final_number = number
        LogPart.objects.bulk_create(stored)
        beyond.update(p.number for p in stored)
        while self.log_persisted_through + 1 in beyond:
            self.log_persisted_through += 1
        self._take_exit_code_from_log(stored)
        if stored:
            self.last_activity_at = timezone.now()
            self.seq += 1
        self.save(update_fields=["log_bytes", "log_truncated", "log_final_number", "log_persisted_through",
                                 "exit_code", "exit_code_from_log", "inconsistent", "last_activity_at", "seq"])
        return stored

    def _take_exit_code_from_log(self, stored: list["LogPart"]) -> None:
        if self.exit_code is not None and not self.exit_code_from_log:
            return
        for part in sorted(stored, key=lambda p: p.number, reverse=True):
            matches = EXIT_LINE.findall(part.content)
            if matches:
                self.exit_code, self.exit_code_from_log = int(matches[-1]), True
                self.inconsistent = self.state in FINAL_STATES and is_inconsistent(self.state, self.exit_code)
                return

    def log_parts(self, after: int = -1):
        return self.parts.filter(attempt=self.attempt, number__gt=after).order_by("number")

    def log_text(self) -> str:
        text = "".join(self.log_parts().values_list("content", flat=True))
        if self.log_truncated:
            text += TRUNCATION_MARKER.format(limit=_human_bytes(settings.LOG_MAX_BYTES))
        return text

    def as_api_dict(self) -> dict:
        return {
            "id": self.pk,
            "number": self.number,
            "build_id": self.build_id,
            "state": self.state,
            "cancel_requested": self.cancel_requested,
            "attempt": self.attempt,
            "exit_code": self.exit_code,
            "inconsistent": self.inconsistent,
            "error_reason": self.error_reason,
            "queue": self.queue,
            "allow_failure": self.allow_failure,
            "config": self.config,
            "worker": self.worker,
            "worker_version": self.worker_version,
            "queued_at": self.queued_at,
            "received_at": self.received_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "log": {
                "bytes": self.log_bytes,
                "persisted_through": self.log_persisted_through,
                "complete": self.log_complete,
                "truncated": self.log_truncated,
            },
            "seq": self.seq,
        }


class LogPart(models.Model):
    job = models.ForeignKey(Job, models.CASCADE, related_name="parts")
    attempt = models.PositiveIntegerField()
    number = models.PositiveIntegerField()
    content = models.TextField()
    final = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["job", "attempt", "number"], name="logpart_unique_number")
        ]

    def __str__(self) -> str:
        return f"{self.job_id}/{self.attempt}/{self.number}"


def _hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# Recently verified token hashes, so a busy worker's requests do not each query the database.
# A revoked token stops working within TOKEN_CACHE_SECONDS.
TOKEN_CACHE_SECONDS = 10
_token_cache: dict[str, tuple[float, int]] = {}


class ApiTokenQuerySet(models.QuerySet):
    def authenticate(self, secret: str) -> "ApiToken | None":
        hashed = _hash_token(secret)
        cached = _token_cache.get(hashed)
        if cached and cached[0] > time.monotonic():
            return ApiToken(pk=cached[1], hashed_secret=hashed)
        token = self.filter(hashed_secret=hashed, revoked=False).first()
        if token is None:
            _token_cache.pop(hashed, None)
            return None
        # Record use at most once a minute, so a busy worker does not write on every request.
        stale = timezone.now() - timedelta(minutes=1)
        ApiToken.objects.filter(Q(last_used_at__isnull=True) | Q(last_used_at__lt=stale), pk=token.pk).update(
            last_used_at=timezone.now()
        )
        _token_cache[hashed] = (time.monotonic() + TOKEN_CACHE_SECONDS, token.pk)
        return token


class ApiToken(models.Model):
    name = models.CharField(max_length=100, unique=True)
    prefix = models.CharField(max_length=12, help_text="The first characters, to recognise a token.")
    hashed_secret = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked = models.BooleanField(default=False)

    objects = ApiTokenQuerySet.as_manager()

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def save(self, *args, **kwargs) -> None:
        _token_cache.pop(self.hashed_secret, None)
        super().save(*args, **kwargs)

    @classmethod
    def mint(cls, name: str) -> tuple["ApiToken", str]:
        """Create a token; the secret is returned once and only its hash is kept."""
        secret = "bb_" + secrets.token_urlsafe(30)
        token = cls.objects.create(name=name, prefix=secret[:10], hashed_secret=_hash_token(secret))
        return token, secret


@transaction.atomic
def create_build(*, repository: str, branch: str, commit: str, message: str = "", author: str = "",
                 event: str = "push", number: int | None = None, jobs: list[dict]) -> Build:
    owner, name = repository.split("/", 1)
    repo, _ = Repository.objects.get_or_create(owner=owner, name=name)
    repo = Repository.objects.select_for_update().get(pk=repo.pk)
    build = Build.objects.create(repository=repo, number=number or repo.next_build_number(), branch=branch,
                                 commit=commit, message=message, author=author, event=event)
    for index, spec in enumerate(jobs, start=1):
        Job.objects.create(build=build, number=spec.get("number") or f"{build.number}.{index}",
                           config=spec.get("config") or {}, queue=spec.get("queue") or "builds.linux",
                           allow_failure=bool(spec.get("allow_failure")))
    return build


# ---------------------------------------------------------------------------------------------------
# The fleet: workers' heartbeats, version history, grouped errors, per-queue rollout settings, alerts.


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
    heartbeats = models.PositiveBigIntegerField(default=0)
    seq = models.PositiveIntegerField(default=0)

    objects = WorkerQuerySet.as_manager()

    class Meta:
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
        material = ("queue", "version", "backend", "host", "pool_size", "busy", "state")
        first = self.heartbeats == 0
        before = {f: getattr(self, f) for f in material}
        change = None
        if not first and beat["version"] != self.version:
            change = WorkerVersionChange(worker=self, from_version=self.version, to_version=beat["version"], at=now)
        if first or beat["state"] != self.state:
            self.state_since = now
        was_silent = not first and self.is_silent(now)
        for f in material:
            setattr(self, f, beat[f])
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
    """Staff-editable thresholds of one rule kind; the kinds and their evaluation live in jobs/alerts.py."""

    kind = models.CharField(max_length=64, unique=True)
    enabled = models.BooleanField(default=True)
    params = models.JSONField(default=dict, blank=True, help_text="Overrides of the rule's default thresholds.")
    updated_at = models.DateTimeField(default=timezone.now)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True,
                                   related_name="+")

    class Meta:
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
        constraints = [models.UniqueConstraint(fields=["alert", "channel", "event"], name="alertnotification_once")]

    def __str__(self) -> str:
        return f"{self.alert_id} {self.event} via {self.channel}"
