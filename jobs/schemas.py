"""The worker API's contract: request models that validate, and answer models that the OpenAPI publishes.

Every string refuses NUL and lone surrogates (400 naming the field), except log content, where a NUL is
replaced by U+FFFD: program output may carry NULs that PostgreSQL text cannot store, and refusing the
part would leave a hole the worker could never fill. A lone surrogate is no character at all but an
encoding bug in the client, and is refused there too."""

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from buildboard.lib.errors import poison
from buildboard.lib.jsonapi import ApiModel, Integer, JsonObject, Name, Text, Timestamp

INT32 = 2**31 - 1
MAX_JOBS_PER_BUILD = 500
MAX_PARTS_PER_REQUEST = 5000

# Top-level paths of the site: a repository owner by one of these names would have pages that collide
# with buildboard's own (/<owner>/<name>/). "." and ".." would be rewritten away by browsers.
RESERVED_OWNERS = frozenset({".", "..", "accounts", "admin", "alerts", "api", "audit", "builds", "fleet", "jobs",
                             "login", "logout", "media", "oidc", "orgs", "settings", "static", "status", "tokens",
                             "users", "ws"})
SLUG_PART = r"[A-Za-z0-9_.-]{1,100}"


_RESERVED_OWNERS = "|".join(sorted(o.replace(".", r"\.") for o in RESERVED_OWNERS))
RepositorySlug = Name(
    f"{SLUG_PART}/{SLUG_PART}", 201, what="owner/name, each 1-100 letters, digits, '_', '.' or '-'",
    description="owner/name: each part 1-100 of A-Z a-z 0-9 _ . -; not a reserved owner (the site's own "
                "top-level paths) and not . or ..",
    not_pattern=rf"^(?:{_RESERVED_OWNERS})/|/\.\.?$",
    not_what=f"reserved: owners may not be {', '.join(sorted(RESERVED_OWNERS))}; names may not be . or ..")
JobId = Integer(0, 2**63 - 1)


def _log_text(value: str) -> str:
    value = value.replace("\x00", "\ufffd")
    what = poison(value)
    if what:
        raise ValueError(f"must not contain {what}")
    return value


LogText = Annotated[str, Field(description="Log output. A NUL is stored as U+FFFD; lone surrogates are refused."),
                    AfterValidator(_log_text)]


# --- requests -------------------------------------------------------------------------------------


class JobSpec(ApiModel):
    number: Text(32, min_length=1, non_blank=True) | None = None
    config: JsonObject = {}
    queue: Text(100, min_length=1, non_blank=True) = "builds.linux"
    allow_failure: bool = False


class BuildIn(ApiModel):
    repository: RepositorySlug
    branch: Text(255, min_length=1, non_blank=True)
    commit: Text(64, min_length=1, non_blank=True)
    message: Text(10_000) = ""
    author: Text(255) = ""
    event: Text(32) = "push"
    number: Integer(1, INT32) | None = Field(None, description="Default: one more than the repository's last")
    jobs: Annotated[list[JobSpec], Field(min_length=1, max_length=MAX_JOBS_PER_BUILD,
                                         description="Job numbers must be unique within the build (else 409)")]


STATES = ("received", "started", "passed", "failed", "errored", "canceled", "cancelled")


class StateIn(ApiModel):
    state: Literal[STATES]
    at: Timestamp | None = None
    worker: Text(255) = ""
    worker_version: Text(64) = ""
    exit_code: Integer(-(2**31), INT32) | None = None
    attempt: Integer(1, INT32) | None = None


class PartIn(ApiModel):
    number: Integer(0, INT32)
    content: LogText
    final: bool = False


class LogIn(ApiModel):
    attempt: Integer(1, INT32) | None = None
    parts: Annotated[list[PartIn], Field(min_length=1, max_length=MAX_PARTS_PER_REQUEST)]


class LogQuery(ApiModel):
    after: Integer(-1, INT32) = -1
    limit: Integer(1, 5000) = 1000
    attempt: Integer(1, INT32) | None = Field(None, description="An earlier attempt's log (all are kept); "
                                                                 "the current one by default")


# --- answers --------------------------------------------------------------------------------------


class FieldError(BaseModel):
    field: str
    message: str


class ErrorOut(BaseModel):
    """Every error answer. Log and state errors also say what the worker needs to resend."""

    model_config = ConfigDict(extra="allow")

    error: str
    errors: list[FieldError] | None = None
    persisted_through: int | None = Field(None, description="Parts 0..N of the attempt are stored")
    cancel: bool | None = None
    current_attempt: int | None = None


class BuildJobOut(BaseModel):
    id: int
    number: str


class BuildOut(BaseModel):
    id: int
    number: int
    url: str
    jobs: list[BuildJobOut]


class Ack(BaseModel):
    cancel: bool = Field(description="Staff asked to cancel the job: stop it and report canceled")


class LogAck(BaseModel):
    cancel: bool
    persisted_through: int = Field(description="Every part 0..N of the attempt is stored (-1: none). Parts of "
                                               "this request may not be counted yet; resend what lies beyond.")


class RestartOut(BaseModel):
    id: int
    attempt: int
    state: str


class CancelOut(BaseModel):
    id: int
    cancel_requested: bool


class LogProgress(BaseModel):
    bytes: int
    persisted_through: int
    complete: bool
    truncated: bool
    archived: bool = Field(description="The attempt's log was moved from the database to the log storage")
    archived_bytes: int | None = Field(None, description="Bytes of log text in the archive")
    compressed_bytes: int | None = Field(None, description="Bytes of the stored (compressed) object")
    expired_at: datetime | None = Field(None, description="When retention deleted the archived log")


class JobOut(BaseModel):
    id: int
    number: str
    build_id: int
    state: str
    cancel_requested: bool
    attempt: int
    exit_code: int | None
    inconsistent: bool
    error_reason: str
    queue: str
    allow_failure: bool
    config: dict[str, Any]
    worker: str
    worker_version: str
    queued_at: datetime
    received_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    log: LogProgress
    seq: int


class LogPartOut(BaseModel):
    number: int
    content: str
    final: bool
    at: datetime = Field(description="When the part was stored")


class LogOut(BaseModel):
    job_id: int
    attempt: int
    current_attempt: int
    parts: list[LogPartOut]
    more: bool
    persisted_through: int
    complete: bool
    truncated: bool
