"""The demo's jobs: some run for minutes and stream steadily (so a newcomer can watch and cancel one),
and the fold timings in their logs add up to the job's time."""

import random
import re
import time

import pytest
from django.core.management import CommandError, call_command

from devtools.simulator import Fleet, parse_job_seconds, plan_log
from jobs import services

from .test_fleet_simulator import http  # noqa: F401 (a fixture)

pytestmark = pytest.mark.django_db

TIMER_END = re.compile(r"travis_time:end:\w+:start=(\d+),finish=(\d+),duration=(\d+)")


def test_fold_timings_add_up_to_the_job(make_build):
    start = 1_700_000_000_000_000_000
    plan = plan_log("python: 3.12", "failed", random.Random(1), lines=200, seconds=180, start_ns=start)
    timers = [tuple(map(int, m.groups())) for _, text in plan for m in TIMER_END.finditer(text)]
    assert [name for _, text in plan for name in re.findall(r"travis_fold:start:(\S+?)\r", text)] == [
        "git.checkout", "install", "script"]
    assert all(finish - begin == duration for begin, finish, duration in timers)
    assert timers[0][0] == start and timers[-1][1] == start + 180 * 10**9
    assert all(a[1] == b[0] for a, b in zip(timers, timers[1:], strict=False))  # back to back, no gaps
    assert sum(d for _, _, d in timers) == 180 * 10**9
    offsets = [offset for offset, _ in plan]
    assert offsets == sorted(offsets) and offsets[-1] == 180


def test_a_long_demo_job_streams_a_part_about_every_second(http, token, make_build):  # noqa: F811
    fleet = Fleet("http://testserver", token, workers=1, seed=5, job_seconds=(3, 3))
    job = make_build().jobs.get()
    begun = time.monotonic()
    fleet.run_job(http, fleet.workers[0], job.pk, "python: 3.12")
    took = time.monotonic() - begun
    job.refresh_from_db()
    assert 2.9 <= took < 6 and job.state in ("passed", "failed", "errored")
    times = list(job.parts.order_by("number").values_list("created_at", flat=True))
    assert 3 <= len(times) <= 6, "a part about every second"
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]
    assert max(gaps) < 1.6
    timers = [tuple(map(int, m.groups())) for m in TIMER_END.finditer(job.log_text())]
    assert sum(d for _, _, d in timers) == 3 * 10**9


def test_cancel_stops_a_long_demo_job(http, token, make_build):  # noqa: F811
    fleet = Fleet("http://testserver", token, workers=1, seed=5, job_seconds=(120, 120))
    job = make_build().jobs.get()
    job.state = "started"
    job.save()
    services.job_cancel(job=job)
    begun = time.monotonic()
    fleet.run_job(http, fleet.workers[0], job.pk, "python: 3.12")
    assert time.monotonic() - begun < 5
    job.refresh_from_db()
    assert job.state == "canceled" and job.log_text().rstrip().endswith("Cancelled by request.\x1b[0m")
    assert fleet.long_running == 0


def test_only_one_long_job_runs_at_a_time():
    fleet = Fleet("http://testserver", "t", workers=4, seed=1, job_seconds=(120, 300), long_share=1.0)
    assert fleet._take_long_job() is True
    assert fleet._take_long_job() is False
    fleet.long_running = 0
    assert fleet._take_long_job() is True
    assert Fleet("http://testserver", "t", job_seconds=None)._take_long_job() is False


def test_simulate_command_reads_job_seconds():
    assert parse_job_seconds("120-300") == (120.0, 300.0)
    assert parse_job_seconds("90") == (90.0, 90.0)
    assert parse_job_seconds("0") is None
    for bad in ("300-120", "-5", "soon"):
        with pytest.raises(ValueError):
            parse_job_seconds(bad)
    with pytest.raises(CommandError, match="job-seconds"):
        call_command("simulate", "--token", "x", "--job-seconds", "soon")
