"""Backfill: move the logs of finished jobs from the database to the log storage, in batches.

Each attempt is archived and committed on its own (see jobs/archiving.py), so Ctrl-C or a kill stops
between or inside one without losing anything, and running the command again resumes with what is left."""

import re
import sys
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from jobs import archiving

UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def duration(text: str) -> timedelta:
    match = re.fullmatch(r"(\d+)([smhd])", text.strip())
    if not match:
        raise CommandError(f"--older-than takes a number and a unit (s, m, h, d), like 1h or 30d; not {text!r}")
    return timedelta(**{UNITS[match[2]]: int(match[1])})


class Command(BaseCommand):
    help = "Archive the logs of finished jobs (oldest first) to the log storage; resumable."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--older-than", type=duration, default=None,
                            help="only jobs finished at least this long ago, e.g. 1h, 30m, 7d")
        parser.add_argument("--dry-run", action="store_true", help="count what would be archived; change nothing")
        parser.add_argument("--batch", type=int, default=100, help="attempts looked up per query (default 100)")
        parser.add_argument("--limit", type=int, default=None, help="stop after this many attempts")

    def handle(self, *args, older_than=None, dry_run=False, batch=100, limit=None, **options) -> None:
        total = len(archiving.due(older_than=older_than))
        if limit is not None:
            total = min(total, limit)
        self.stdout.write(f"{total} attempt(s) to archive")
        if dry_run or not total:
            return
        done, failed, outcomes = 0, set(), {}
        try:
            while done + len(failed) < total:
                found = [a for a in archiving.due(older_than=older_than, limit=batch + len(failed)) if a not in failed]
                if not found:
                    break
                for job_id, attempt in found[: total - done - len(failed)]:
                    try:
                        outcome = archiving.archive_attempt(job_id, attempt, now=timezone.now())
                    except Exception as e:  # the storage failed: report, leave the parts, go on
                        failed.add((job_id, attempt))
                        self.stderr.write(f"\njob {job_id} attempt {attempt}: {type(e).__name__}: {e}")
                        continue
                    if outcome != "archived":
                        failed.add((job_id, attempt))  # not due any more, or still being written: skip it
                    outcomes[outcome] = outcomes.get(outcome, 0) + 1
                    done += outcome == "archived"
                    self._progress(done + len(failed), total)
        except KeyboardInterrupt:
            self.stdout.write(f"\ninterrupted: archived {done}; run the command again to resume")
            return
        summary = ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()) if k != "archived")
        self.stdout.write(f"\narchived {done}" + (f" (skipped: {summary})" if summary else "")
                          + (f"; {len(failed)} not archived" if failed else ""))

    def _progress(self, count: int, total: int) -> None:
        width = 40
        filled = width * count // max(total, 1)
        stream = sys.stderr if self.stderr._out is sys.stderr else self.stderr
        stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {count}/{total}")
        stream.flush()
