"""Earlier attempts' logs stay readable; build-wide restart and cancel are for those who may operate the
repository; the build page's failure excerpt names the same lines as the job page."""

import pytest

from jobs import logtext, services, tasks
from jobs.models import Job

pytestmark = pytest.mark.django_db

AT = "2026-11-26T10:00:00+00:00"
E = "\x1b"


def finish(job, attempt, content, state="failed"):
    tasks.apply_job_state(job.pk, attempt, "started", AT)
    tasks.ingest_log_parts(job.pk, attempt, [{"number": 0, "content": content, "final": True}])
    tasks.apply_job_state(job.pk, attempt, state, AT, exit_code=1 if state == "failed" else 0)
    job.refresh_from_db()


def test_each_attempts_log_is_read_back_by_number(client, job):
    finish(job, 1, "first try\n")
    assert services.job_restart(job=job)
    finish(job, 2, "second try\n", state="passed")
    current = client.get(f"/api/v1/jobs/{job.pk}/log").json()
    assert (current["attempt"], current["current_attempt"]) == (2, 2)
    assert [p["content"] for p in current["parts"]] == ["second try\n"] and current["parts"][0]["at"]
    earlier = client.get(f"/api/v1/jobs/{job.pk}/log?attempt=1").json()
    assert earlier["attempt"] == 1 and earlier["complete"] is True
    assert [p["content"] for p in earlier["parts"]] == ["first try\n"]
    assert client.get(f"/jobs/{job.pk}/log.txt?attempt=1").getvalue() == b"first try\n"
    download = client.get(f"/jobs/{job.pk}/log.txt?attempt=1&download=1")
    assert 'filename="job-' in download["Content-Disposition"] and "attempt-1.log" in download["Content-Disposition"]
    assert client.get(f"/api/v1/jobs/{job.pk}/log?attempt=3").status_code == 404
    assert client.get(f"/api/v1/jobs/{job.pk}/log?attempt=x").status_code == 400
    assert client.get(f"/jobs/{job.pk}/?attempt=1").status_code == 200
    assert client.get(f"/jobs/{job.pk}/?attempt=0").status_code == 404


def test_build_actions_need_the_operate_role_and_a_valid_action(client, bob, alice, carol, dave, make_build):
    build = make_build(jobs=2)
    for job in build.jobs.all():
        finish(job, 1, "boom\n")
    url = f"/builds/{build.pk}/action"
    assert client.post(url, {"action": "restart"}).status_code == 403
    for user in (bob, carol, alice):  # an outsider, a reader, staff without a grant
        client.force_login(user)
        assert client.post(url, {"action": "restart"}).status_code == 403
    assert set(Job.objects.values_list("attempt", flat=True)) == {1}
    client.force_login(dave)
    assert client.get(url).status_code == 405
    assert client.post(url, {"action": "explode"}).status_code == 302
    assert set(Job.objects.values_list("attempt", flat=True)) == {1}
    assert client.post(url, {"action": "restart_failed"}).status_code == 302
    assert set(Job.objects.values_list("attempt", "state")) == {(2, "queued")}


def test_restart_failed_jobs_leaves_passed_ones_alone(make_build):
    build = make_build(jobs=3)
    failed, passed, errored = build.jobs.order_by("id")
    finish(failed, 1, "x\n")
    finish(passed, 1, "ok\n", state="passed")
    tasks.apply_job_state(errored.pk, 1, "errored", AT)
    assert services.build_restart(build=build, only_failed=True) == 2
    assert dict(Job.objects.values_list("pk", "attempt")) == {failed.pk: 2, passed.pk: 1, errored.pk: 2}
    assert services.build_cancel(build=build) == 2
    assert services.build_restart(build=build) == 1  # only finished jobs restart


def test_failure_excerpt_is_the_failing_fold_with_the_job_pages_line_numbers():
    log = (f"travis_fold:start:install\r{E}[0K$ make install\nok\ntravis_fold:end:install\r{E}[0K\n"
           f"travis_fold:start:script\r{E}[0K$ make test\n"
           "progress 10%\rprogress 100%\n"
           f"{E}[31mFAILED{E}[0m test_login\n"
           'The command "make test" exited with 2.\n'
           f"travis_fold:end:script\r{E}[0K\n"
           "Done. Your build exited with 2.\n")
    excerpt = logtext.failure_excerpt(log)
    assert excerpt.fold == "script"
    assert (excerpt.first, excerpt.last) == (3, 6)
    assert excerpt.lines == ["$ make test", "progress 100%", "FAILED test_login",
                             'The command "make test" exited with 2.']


def test_failure_excerpt_without_a_failing_fold_is_the_last_twenty_lines():
    excerpt = logtext.failure_excerpt("".join(f"line {i}\n" for i in range(50)))
    assert excerpt.fold == "" and (excerpt.first, excerpt.last) == (31, 50)
    assert excerpt.lines[0] == "line 30" and len(excerpt.lines) == 20
    assert logtext.failure_excerpt("") is None


def test_build_page_shows_the_first_ten_failures_in_full_and_names_the_rest(client, make_build):
    build = make_build(jobs=12)
    for job in build.jobs.all():
        finish(job, 1, f"job {job.number} broke\n")
    page = client.get(f"/builds/{build.pk}/").content.decode()
    assert page.count('<article class="failure"') == 10
    assert "Also failed:" in page and page.count("broke") == 10
