"""Finished logs leave the database: one compressed object per job attempt in the log storage.

The object is two gzip members: the log text (the parts' content, in part order), then a JSON index of
the parts ([number, byte offset, byte length, final, arrived at]) that lets `?after=N` start where part
N+1 starts. `zcat` prints the text followed by the index line. The row that records the archive
(LogArchive) holds where the index starts, the sizes and the SHA-256 of the object.

The order is what makes it safe: write the object, read it back and check size and SHA-256, then, in
one transaction under the job's row lock, record the archive and delete the parts. A crash before that
commit leaves the parts where they were (the object is overwritten by the next run, its key is fixed); a
crash after it leaves the archive. A reader finds one or the other, never half of each.

This module is the object and its storage (what logread reads through); jobs/archiving.py decides what to
archive and when, and records it."""

import gzip
import hashlib
import heapq
import json
import logging
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.core.files import File
from django.core.files.storage import storages
from django.utils import timezone
from django.utils.dateparse import parse_datetime

log = logging.getLogger(__name__)

CHUNK = 1 << 16
MISSING = "log unavailable: archive object missing"
CORRUPT = "log unavailable: archive object corrupt"


class LogUnavailable(Exception):
    """An archived log cannot be read (its object is missing or corrupt, or it expired)."""

    def __init__(self, message: str, archive=None):
        super().__init__(message)
        self.message = message
        self.archive = archive


class VerifyFailed(Exception):
    """The object read back from the storage is not the one written."""


def storage():
    return storages["logs"]


def object_key(job_id: int, attempt: int) -> str:
    return f"jobs/{job_id}/attempt-{attempt}.log.gz"


# --- writing ---------------------------------------------------------------------------------------


@dataclass
class Written:
    file: tempfile.SpooledTemporaryFile
    size: int
    compressed_size: int
    sha256: str
    index_offset: int
    numbers: list[int]
    ended_at: datetime | None


class _Hashing:
    """A file wrapper that counts and hashes what is written through it."""

    def __init__(self, raw):
        self.raw, self.sha, self.count = raw, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.count += len(data)
        return self.raw.write(data)

    def flush(self) -> None:
        self.raw.flush()


def write_object(parts) -> Written:
    """Compress (number, content, final, created_at) rows, in number order, into a spooled file."""
    raw = tempfile.SpooledTemporaryFile(max_size=8 << 20)
    out = _Hashing(raw)
    index, offset, ended = [], 0, None
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=6, mtime=0) as z:
        for number, content, final, at in parts:
            data = content.encode()
            z.write(data)
            index.append([number, offset, len(data), final, at.isoformat()])
            offset += len(data)
            ended = at if ended is None or at > ended else ended
    index_offset = out.count
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=6, mtime=0) as z:
        z.write(json.dumps({"v": 1, "parts": index}, separators=(",", ":")).encode())
    raw.seek(0)
    return Written(raw, offset, out.count, out.sha.hexdigest(), index_offset, [p[0] for p in index], ended)


def _digest(f) -> tuple[int, str]:
    sha, size = hashlib.sha256(), 0
    while chunk := f.read(CHUNK):
        sha.update(chunk)
        size += len(chunk)
    return size, sha.hexdigest()


def upload(key: str, written: Written) -> None:
    """Store the object and read it back: the size and SHA-256 must be the ones written."""
    name = storage().save(key, File(written.file, name=key))
    if name != key:
        raise VerifyFailed(f"the storage kept the object as {name!r}, not {key!r}")
    with storage().open(key, "rb") as f:
        size, sha = _digest(f)
    if (size, sha) != (written.compressed_size, written.sha256):
        raise VerifyFailed(f"{key}: read back {size} bytes sha256 {sha}, wrote {written.compressed_size} "
                           f"bytes sha256 {written.sha256}")


# --- reading ---------------------------------------------------------------------------------------


def archive_for(job, attempt: int):
    """The job's LogArchive for an attempt, or None."""
    return job.archives.filter(attempt=attempt).first()


def _report(archive, message: str) -> None:
    """Staff see it on the fleet page."""
    type(archive).objects.filter(pk=archive.pk).update(problem=message, problem_at=timezone.now())
    log.error("job %s attempt %s: %s (%s)", archive.job_id, archive.attempt, message, archive.key)


class Reader:
    """An archived object, verified (size and SHA-256) before a byte of it is served."""

    def __init__(self, archive):
        self.archive = archive
        if archive.expired_at:
            raise LogUnavailable(f"log expired on {archive.expired_at:%Y-%m-%d}", archive)
        try:
            self.file = storage().open(archive.key, "rb")
        except FileNotFoundError:
            _report(archive, MISSING)
            raise LogUnavailable(MISSING, archive) from None
        except OSError as e:  # includes botocore's ClientError for a 404 (NoSuchKey) through django-storages
            if "404" in str(e) or "NoSuchKey" in str(e) or "Not Found" in str(e):
                _report(archive, MISSING)
                raise LogUnavailable(MISSING, archive) from None
            raise
        try:
            size, sha = _digest(self.file)
        except Exception as e:
            self.file.close()
            if _missing_error(e):
                _report(archive, MISSING)
                raise LogUnavailable(MISSING, archive) from None
            raise
        if (size, sha) != (archive.compressed_size, archive.sha256):
            self.file.close()
            _report(archive, CORRUPT)
            raise LogUnavailable(CORRUPT, archive)
        try:
            self.file.seek(archive.index_offset)
            index = json.loads(gzip.decompress(self.file.read()))["parts"]
        except (OSError, EOFError, ValueError, KeyError, zlib.error):
            self.file.close()
            _report(archive, CORRUPT)
            raise LogUnavailable(CORRUPT, archive) from None
        self.index = index

    def close(self) -> None:
        self.file.close()

    def parts(self, after: int = -1) -> Iterator[dict]:
        """The parts numbered above `after`, content read as they are yielded."""
        wanted = [p for p in self.index if p[0] > after]
        if not wanted:
            return
        self.file.seek(0)
        z = gzip.GzipFile(fileobj=self.file, mode="rb")
        skip = wanted[0][1]
        while skip:
            skip -= len(z.read(min(skip, CHUNK)))
        for number, _offset, length, final, at in wanted:
            content = z.read(length).decode()
            yield {"number": number, "content": content, "final": final, "at": parse_datetime(at)}


def _missing_error(e: Exception) -> bool:
    text = str(e)
    return "404" in text or "NoSuchKey" in text or "Not Found" in text


def merged(archived: Iterator[dict], live: Iterator[dict]) -> Iterator[dict]:
    """The archive's parts and any stored after it (a late part of a gap), in number order, each once."""
    last = None
    for part in heapq.merge(archived, live, key=lambda p: p["number"]):
        if part["number"] != last:
            yield part
        last = part["number"]


# --- retention -------------------------------------------------------------------------------------


def retention_days(repository) -> int:
    if repository.log_retention_days is not None:
        return repository.log_retention_days
    return settings.LOG_RETENTION_DAYS
