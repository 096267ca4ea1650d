"""Repositories, builds, jobs and log parts; who may see them is decided in accounts.permissions."""

import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import DataError, connections, models, router, transaction
from django.db.models import F, Max
from django.urls import reverse
from django.utils import timezone

from accounts import permissions
from accounts.services import ensure_organization
from buildboard.lib import compiled

from . import card
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

DEFAULT_QUEUE = "builds.linux"


def validate_regex(value: str) -> None:
    try:
        re.compile(value)
    except re.error as e:
        raise ValidationError(f"Not a regular expression: {e}") from None


EXIT_LINE = re.compile(r"Done\. Your build exited with (-?\d+)\.")
# Larger logs are not parsed whole for the build page's failure excerpt.
EXCERPT_MAX_LOG_BYTES = 4 * 1024 * 1024


class RepositoryQuerySet(models.QuerySet):
    def visible_to(self, user) -> "RepositoryQuerySet":
        return self.filter(permissions.repositories_visible_to(user))


def new_badge_token() -> str:
    return secrets.token_urlsafe(18)


class Repository(models.Model):
    owner = models.CharField(max_length=100)
    name = models.CharField(max_length=100)
    private = models.BooleanField(default=False)
    web_url = models.URLField(
        "web URL", max_length=300, blank=True, validators=[URLValidator(schemes=["http", "https"])],
        help_text="The repository on its forge, e.g. https://github.com/acme/rocket; commits link to "
                  "<web URL>/commit/<sha>.")
    error_pattern = models.CharField(
        max_length=500, blank=True, validators=[validate_regex],
        help_text="A regular expression for the job page's “Jump to first error”; empty: the site default.")
    log_retention_days = models.PositiveIntegerField(
        null=True, blank=True,
        help_text="Days an archived log of this repository is kept; empty: the site's LOG_RETENTION_DAYS; 0: forever.")
    created_at = models.DateTimeField(default=timezone.now)
    # Lets a private repository's badge be embedded (`?token=`); admins rotate it to cut old links off.
    badge_token = models.CharField(max_length=32, default=new_badge_token)

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
        return permissions.can_read(user, self)

    def rotate_badge_token(self) -> None:
        self.badge_token = new_badge_token()
        self.save(update_fields=["badge_token"])

    def commit_url(self, commit: str) -> str:
        """Where the forge shows this commit; empty without a web URL."""
        if not self.web_url or not re.fullmatch(r"[0-9A-Za-z._-]+", commit or ""):
            return ""
        return f"{self.web_url.rstrip('/')}/commit/{commit}"

    @property
    def log_error_pattern(self) -> str:
        return self.error_pattern or settings.LOG_ERROR_PATTERN

    def next_build_number(self) -> int:
        top = self.builds.aggregate(top=Max("number"))["top"]
        return (top or 0) + 1


class BuildQuerySet(models.QuerySet):
    def visible_to(self, user) -> "BuildQuerySet":
        return self.filter(permissions.repositories_visible_to(user, "repository__"))


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

    @property
    def subject(self) -> str:
        """The commit message's first line, as lists show it (the page shows the whole message)."""
        return self.message.strip().split("\n", 1)[0].strip()

    @property
    def commit_url(self) -> str:
        return self.repository.commit_url(self.commit)

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
        return self.filter(permissions.repositories_visible_to(user, "build__repository__"))


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
            card.changing(self)
        return bool(updated)

    def request_cancel(self) -> bool:
        """Ask the worker to stop; it learns through its next API response. Returns False if finished."""
        updated = Job.objects.filter(pk=self.pk, state__in=ACTIVE_STATES).update(
            cancel_requested=True, seq=F("seq") + 1
        )
        if updated:
            self.refresh_from_db()
            card.changing(self)
        return bool(updated)

    def store_log_parts(self, attempt: int, parts: list[dict]) -> list["NewPart"]:
        """Store new parts of a (locked) job's current attempt, within the log cap.

        Duplicates are skipped; returns the parts actually stored, in number order."""
        # One query for every stored number past the contiguous prefix tells both which incoming
        # parts are duplicates and how far the prefix reaches once this batch is in.
        beyond = set(_numbers_stored_beyond(self.pk, attempt, self.log_persisted_through))
        # An archived attempt's parts left the table; those beyond the prefix are listed on its archive
        # (only a finished job's attempt is archived, so a running one needs no look).
        if self.state in FINAL_STATES:
            for archived in LogArchive.objects.filter(job=self, attempt=attempt).values_list("beyond", flat=True):
                beyond.update(n for n in archived if n > self.log_persisted_through)
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
            announced = part.get("announced_us")  # shown to viewers from the buffer at this time
            at = datetime.fromtimestamp(announced / 1_000_000, UTC) if announced else timezone.now()
            stored.append(NewPart(self.pk, attempt, number, part["content"], bool(part.get("final")), at))
            if part.get("final") and self.log_final_number is None:
                self.log_final_number = number
        LogPart.insert(stored)
        beyond.update(p.number for p in stored)
        while self.log_persisted_through + 1 in beyond:
            self.log_persisted_through += 1
        self._take_exit_code_from_log(stored)
        if stored:
            self.last_activity_at = timezone.now()
            self.seq += 1
        compiled.update_fields(self, ["log_bytes", "log_truncated", "log_final_number", "log_persisted_through",
                                      "exit_code", "exit_code_from_log", "inconsistent", "last_activity_at", "seq"])
        return stored

    def _take_exit_code_from_log(self, stored: list["NewPart"]) -> None:
        if self.exit_code is not None and not self.exit_code_from_log:
            return
        for part in sorted(stored, key=lambda p: p.number, reverse=True):
            matches = EXIT_LINE.findall(part.content)
            if matches:
                self.exit_code, self.exit_code_from_log = int(matches[-1]), True
                self.inconsistent = self.state in FINAL_STATES and is_inconsistent(self.state, self.exit_code)
                return

    def log_text(self, attempt: int | None = None) -> str:
        """The whole log of the current attempt (or an earlier one, which is kept as it was)."""
        from . import logread

        return logread.log_text(self, attempt)

    @property
    def is_failure(self) -> bool:
        return self.state in (JobState.FAILED, JobState.ERRORED)

    def failure_excerpt(self):
        """Where this finished job failed (see jobs/logtext.py); None without a log. A log too big to
        read on every page view gives its last lines, unnumbered."""
        from . import logread, logtext

        try:
            return self._failure_excerpt(logread, logtext)
        except logread.LogUnavailable:
            return None  # the job page says why; the build page just has no excerpt

    def _failure_excerpt(self, logread, logtext):
        if self.log_bytes <= EXCERPT_MAX_LOG_BYTES:
            return logtext.failure_excerpt(self.log_text())
        tail = logread.tail_contents(self, 64 * 1024)
        lines = [logtext.visible(line) for line in "".join(tail).splitlines()][-logtext.TAIL_LINES:]
        return logtext.Excerpt(0, 0, lines)

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
                **self.log_archive_dict(),
            },
            "seq": self.seq,
        }


    def log_archive_dict(self, attempt: int | None = None) -> dict:
        """Where the attempt's log lives: `archived` with its sizes, and `expired_at` once retention
        deleted it."""
        archive = self.archives.filter(attempt=attempt or self.attempt).first() if self.is_finished else None
        if archive is None:
            return {"archived": False}
        return {"archived": True, "archived_bytes": archive.size, "compressed_bytes": archive.compressed_size,
                "expired_at": archive.expired_at}


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

    @classmethod
    def insert(cls, parts: "list[NewPart] | list[LogPart]") -> None:
        """bulk_create without reading back ids, on PostgreSQL as one COPY: Django's psycopg binding quotes
        every character of the log into the INSERT's text in Python, which was half of a flush's time under
        bench/ingest; COPY sends the rows as they are. Nothing reads a stored part's id afterwards."""
        connection = connections[router.db_for_write(cls)]
        if not parts:
            return
        if connection.vendor != "postgresql":
            cls.objects.bulk_create([p if isinstance(p, LogPart) else LogPart(**p._asdict()) for p in parts])
            return
        for part in parts:  # what psycopg says of a NUL in an INSERT; COPY would only say "0x00"
            if "\x00" in part.content:
                raise DataError(f"part {part.number}: PostgreSQL text fields cannot contain NUL (0x00) bytes")
        fields = [cls._meta.get_field(name) for name in ("job", "attempt", "number", "content", "final", "created_at")]
        columns = ", ".join(connection.ops.quote_name(field.column) for field in fields)
        # Django wraps the driver's errors in execute() only: a server gone mid-COPY must still be the
        # OperationalError the drain retries, not an error that sets the parts aside as poison.
        with connection.wrap_database_errors, connection.cursor() as cursor, cursor.copy(
                f"COPY {connection.ops.quote_name(cls._meta.db_table)} ({columns}) FROM STDIN") as copy:
            for part in parts:
                copy.write_row([getattr(part, field.attname) for field in fields])


class NewPart(NamedTuple):
    """A part Job.store_log_parts stores: LogPart's columns, without building a model instance for each of
    the thousands of parts a drain round stores."""

    job_id: int
    attempt: int
    number: int
    content: str
    final: bool
    created_at: datetime


# The numbers of an attempt's stored parts past a number (Job.store_log_parts, on every drain round).
_numbers_stored_beyond = compiled.Compiled(LogPart, lambda job_id, attempt, after: LogPart.objects.filter(
    job_id=job_id, attempt=attempt, number__gt=after).values_list("number", flat=True), 3)


class LogArchive(models.Model):
    """One attempt's log as one compressed object in the log storage (jobs/archive.py).

    The row is written in the transaction that deletes the attempt's parts from the database, so a reader
    finds either the parts or the archive, never neither."""

    job = models.ForeignKey(Job, models.CASCADE, related_name="archives")
    attempt = models.PositiveIntegerField()
    key = models.CharField(max_length=300)
    size = models.PositiveBigIntegerField(help_text="Bytes of log text")
    compressed_size = models.PositiveBigIntegerField(help_text="Bytes of the stored object")
    sha256 = models.CharField(max_length=64)
    index_offset = models.PositiveBigIntegerField(help_text="Where the object's index member starts")
    parts = models.PositiveIntegerField()
    # Numbers stored beyond the contiguous prefix (a gap that never filled): late duplicates are still known.
    beyond = models.JSONField(default=list, blank=True)
    log_ended_at = models.DateTimeField(help_text="When the last part arrived: retention counts from here")
    created_at = models.DateTimeField(default=timezone.now)
    expired_at = models.DateTimeField(null=True, blank=True, db_index=True)
    problem = models.CharField(max_length=200, blank=True)
    problem_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["job", "attempt"], name="logarchive_unique_attempt")]
        indexes = [models.Index(fields=["log_ended_at"], name="logarchive_ended_idx")]

    def __str__(self) -> str:
        return f"{self.job_id}/{self.attempt} ({self.key})"


class DeadLetterQuerySet(models.QuerySet):
    def recent(self, since) -> "DeadLetterQuerySet":
        return self.filter(created_at__gte=since)


class DeadLetter(models.Model):
    """A buffered log part that could not be stored for a reason no retry cures, kept for staff.

    The log holds a marker in its place (jobs/tasks.py), so the job's later parts are stored as usual."""

    job_id = models.BigIntegerField(db_index=True)  # no foreign key: the job may be gone, or never existed
    attempt = models.PositiveIntegerField(null=True, blank=True)
    number = models.PositiveIntegerField(null=True, blank=True, help_text="The part's number, if it could be read.")
    payload = models.BinaryField(help_text="What was buffered, byte for byte (it may hold what text cannot).")
    error = models.TextField()
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    objects = DeadLetterQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"job {self.job_id} part {self.number}: {self.error[:60]}"

    @property
    def payload_preview(self) -> str:
        return bytes(self.payload[:300]).decode("utf-8", "backslashreplace")


MAX_BUILD_NUMBER = 2**31 - 1  # the column is a PostgreSQL integer


class BuildNumbersExhausted(Exception):
    """The repository's builds already reach MAX_BUILD_NUMBER: there is no next number to give."""


@transaction.atomic
def create_build(*, repository: str, branch: str, commit: str, message: str = "", author: str = "",
                 event: str = "push", number: int | None = None, jobs: list[dict]) -> Build:
    owner, name = repository.split("/", 1)
    repo = Repository.objects.filter(owner=owner, name=name).first()
    if repo is None:
        org = ensure_organization(owner)
        repo, _ = Repository.objects.get_or_create(owner=owner, name=name,
                                                   defaults={"private": org.new_repositories_private})
    repo = Repository.objects.select_for_update().get(pk=repo.pk)
    number = number or repo.next_build_number()
    if number > MAX_BUILD_NUMBER:
        raise BuildNumbersExhausted(repository)
    build = Build.objects.create(repository=repo, number=number, branch=branch,
                                 commit=commit, message=message, author=author, event=event)
    for index, spec in enumerate(jobs, start=1):
        Job.objects.create(build=build, number=spec.get("number") or f"{build.number}.{index}",
                           config=spec.get("config") or {}, queue=spec.get("queue") or "builds.linux",
                           allow_failure=bool(spec.get("allow_failure")))
    return build
