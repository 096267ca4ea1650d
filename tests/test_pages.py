"""Pages for people: what each shows, who may see it, and the staff-only cancel and restart actions."""

import re

import pytest
from django.test import Client

from jobs import tasks
from jobs.models import Job, Repository

pytestmark = pytest.mark.django_db

AT = "2026-11-26T10:00:00+00:00"


@pytest.fixture
def private_build(make_build):
    build = make_build(repository="acme/secret")
    Repository.objects.filter(pk=build.repository_id).update(private=True)
    return build


def finish(job, state="passed", exit_code=0):
    tasks.apply_job_state(job.pk, job.attempt, "started", AT, worker="w1")
    tasks.apply_job_state(job.pk, job.attempt, state, AT, exit_code=exit_code)
    job.refresh_from_db()
    return job


def test_home_lists_recent_public_builds_with_state_and_live_hooks(client, make_build):
    make_build(branch="main", commit="c0ffee1234", message="Teach the rocket to fly")
    page = client.get("/").content.decode()
    assert "acme/rocket" in page and "Teach the rocket to fly" in page and "c0ffee1" in page
    assert 'data-live="builds"' in page and "js/dashboard.js" in page


def test_home_hides_private_builds_from_anonymous_and_bob_but_not_from_staff(client, make_build, private_build,
                                                                             alice, bob):
    make_build()
    assert "acme/secret" not in client.get("/").content.decode()
    client.force_login(bob)
    assert "acme/secret" not in client.get("/").content.decode()
    client.force_login(alice)
    assert "acme/secret" in client.get("/").content.decode()


def test_lists_show_a_commit_messages_first_line_and_the_build_page_all_of_it(client, make_build):
    build = make_build(message="Fix the login page\n\nThe form posted to the wrong URL.")
    row = client.get("/").content.decode()
    assert "Fix the login page" in row and "wrong URL" not in row
    assert "The form posted to the wrong URL." in client.get(build.get_absolute_url()).content.decode()


def test_home_filters_by_repository_branch_and_state(client, make_build):
    make_build(repository="acme/rocket", branch="main")
    make_build(repository="acme/rocket", branch="dev", number=40)
    failed = make_build(repository="acme/boat", branch="main").jobs.get()
    finish(failed, "failed", 1)

    def numbers(query):
        return re.findall(r'data-build-id="(\d+)"', client.get("/" + query).content.decode())

    assert len(numbers("")) == 3
    assert len(numbers("?repository=acme/rocket")) == 2
    assert len(numbers("?repository=acme/rocket&branch=dev")) == 1
    assert numbers("?state=failed") == [str(failed.build_id)]
    assert numbers("?repository=nobody/nothing") == []


def test_repository_page_has_branch_pull_request_and_history_tabs(client, make_build):
    make_build(branch="main")
    newest_main = make_build(branch="main")
    feature = make_build(branch="feature/wings")
    pull = make_build(branch="feature/wings", event="pull_request")
    page = client.get("/acme/rocket/").content.decode()
    cards = re.findall(r'class="branch-card" data-build-id="(\d+)"', page)
    assert cards == [str(feature.pk), str(newest_main.pk)]  # pushes only
    assert "/acme/rocket.svg" in page
    pulls = client.get("/acme/rocket/?tab=pulls").content.decode()
    assert re.findall(r'class="branch-card" data-build-id="(\d+)"', pulls) == [str(pull.pk)]
    history = client.get("/acme/rocket/?tab=history").content.decode()
    assert history.count("<tr data-build-id=") == 4
    assert client.get("/acme/rocket/?tab=nope").status_code == 404


def test_history_pages_past_fifty_builds_without_counting(client, make_build):
    for _ in range(53):
        make_build()
    first = client.get("/").content.decode()
    assert first.count("<tr data-build-id=") == 50
    assert 'href="?page=2"' in first and "Newer builds" not in first
    second = client.get("/?page=2").content.decode()
    assert second.count("<tr data-build-id=") == 3
    assert 'href="/"' in second and "Older builds" not in second
    assert client.get("/?page=x").status_code == 200


def test_an_empty_filtered_list_says_so(client, make_build):
    make_build()
    page = client.get("/?branch=nothing-here").content.decode()
    assert "No builds match these filters" in page
    assert "No builds yet" not in page


def test_commits_link_to_the_forge_when_the_repository_has_a_web_url(client, make_build):
    build = make_build(commit="4f9c2d1e8b")
    assert "commit-link" not in client.get(f"/builds/{build.pk}/").content.decode()
    build.repository.web_url = "https://github.com/acme/rocket"
    build.repository.save()
    page = client.get(f"/builds/{build.pk}/").content.decode()
    assert 'href="https://github.com/acme/rocket/commit/4f9c2d1e8b"' in page
    assert 'href="https://github.com/acme/rocket/commit/4f9c2d1e8b"' in client.get("/").content.decode()


def test_private_repository_page_is_404_to_anonymous(client, private_build, alice):
    assert client.get("/acme/secret/").status_code == 404
    client.force_login(alice)
    assert client.get("/acme/secret/").status_code == 200


def test_build_page_shows_jobs_states_durations_and_allowed_failures(client, make_build):
    build = make_build(jobs=2, allow_failure=(1,))
    first, second = build.jobs.order_by("id")
    finish(first, "failed", 1)
    page = client.get(f"/builds/{build.pk}/").content.decode()
    assert "allowed to fail" in page
    assert f'data-job-id="{second.pk}"' in page
    assert "state-failed" in page and "state-queued" in page
    assert 'data-live="build"' in page


def test_private_build_and_job_pages_are_404_to_anonymous(client, private_build, alice):
    job = private_build.jobs.get()
    for url in (f"/builds/{private_build.pk}/", f"/jobs/{job.pk}/", f"/builds/{private_build.pk}/row"):
        assert client.get(url).status_code == 404, url
    client.force_login(alice)
    for url in (f"/builds/{private_build.pk}/", f"/jobs/{job.pk}/", f"/builds/{private_build.pk}/row"):
        assert client.get(url).status_code == 200, url


def test_job_page_has_log_viewer_hooks_and_no_inline_script_or_style(client, job):
    response = client.get(f"/jobs/{job.pk}/")
    page = response.content.decode()
    assert f'data-ws-path="/ws/jobs/{job.pk}/"' in page
    assert f'data-log-url="/api/v1/jobs/{job.pk}/log"' in page
    assert "script-src 'self'" in response["Content-Security-Policy"]
    assert re.findall(r"<script(?![^>]*\bsrc=)", page) == []
    assert " style=" not in page and re.search(r"\son[a-z]+=", page) is None


def test_job_page_shows_cancel_and_restart_only_to_operators(client, job, alice, bob, carol, dave):
    assert "Cancel job" not in client.get(f"/jobs/{job.pk}/").content.decode()
    for reader in (bob, alice, carol):  # an outsider, staff (who read everything), a reader
        client.force_login(reader)
        assert "Cancel job" not in client.get(f"/jobs/{job.pk}/").content.decode()
    client.force_login(dave)
    assert "Cancel job" in client.get(f"/jobs/{job.pk}/").content.decode()


def test_cancel_is_refused_to_anonymous_and_non_staff(client, job, bob):
    assert client.post(f"/jobs/{job.pk}/cancel").status_code == 403
    client.force_login(bob)
    assert client.post(f"/jobs/{job.pk}/cancel").status_code == 403
    job.refresh_from_db()
    assert not job.cancel_requested


def test_cancel_needs_a_csrf_token(job, alice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    assert client.post(f"/jobs/{job.pk}/cancel").status_code == 403
    job.refresh_from_db()
    assert not job.cancel_requested


def test_operator_cancel_shows_canceling_until_the_worker_reports(client, job, dave, auth):
    client.force_login(dave)
    tasks.apply_job_state(job.pk, 1, "started", AT)
    response = client.post(f"/jobs/{job.pk}/cancel")
    assert response.status_code == 302 and response["Location"] == f"/jobs/{job.pk}/"
    assert 'id="job-state" data-role="state">canceling<' in client.get(f"/jobs/{job.pk}/").content.decode()
    state = client.post(f"/api/v1/jobs/{job.pk}/state", {"state": "passed"}, content_type="application/json",
                        headers=auth)
    assert state.json()["cancel"] is True
    tasks.apply_job_state(job.pk, 1, "canceled", AT)
    assert 'data-role="state">canceled<' in client.get(f"/jobs/{job.pk}/").content.decode()


def test_operator_restart_starts_a_new_attempt_of_a_finished_job(client, job, dave):
    finish(job, "failed", 1)
    client.force_login(dave)
    assert client.post(f"/jobs/{job.pk}/restart").status_code == 302
    job.refresh_from_db()
    assert (job.attempt, job.state) == (2, "queued")


def test_restart_of_a_running_job_changes_nothing(client, job, dave):
    tasks.apply_job_state(job.pk, 1, "started", AT)
    client.force_login(dave)
    client.post(f"/jobs/{job.pk}/restart")
    assert Job.objects.get(pk=job.pk).attempt == 1


def test_cancel_and_restart_of_a_private_job_are_404_to_anonymous(client, private_build):
    job = private_build.jobs.get()
    assert client.post(f"/jobs/{job.pk}/cancel").status_code == 404
    assert client.post(f"/jobs/{job.pk}/restart").status_code == 404


def test_build_row_applies_the_dashboard_filters(client, make_build):
    build = make_build(branch="dev")
    row = client.get(f"/builds/{build.pk}/row?repository=acme/rocket&branch=dev")
    assert row.status_code == 200 and f'data-build-id="{build.pk}"' in row.content.decode()
    assert client.get(f"/builds/{build.pk}/row?branch=main").status_code == 204
    assert client.get(f"/builds/{build.pk}/row?repository=acme/boat").status_code == 204


def test_login_page_and_logout(client, bob):
    assert "Log in to" in client.get("/login/").content.decode()
    response = client.post("/login/", {"username": "bob", "password": "bob-password"})
    assert response.status_code == 302
    assert "Log out bob" in client.get("/").content.decode()
    assert client.post("/logout/").status_code in (200, 302)
    assert "Log out bob" not in client.get("/").content.decode()


def test_bad_login_says_so(client, bob):
    page = client.post("/login/", {"username": "bob", "password": "wrong"}).content.decode()
    assert 'role="alert"' in page


def test_job_page_marks_a_truncated_log(client, job, settings):
    settings.LOG_MAX_BYTES = 10
    tasks.ingest_log_parts(job.pk, 1, [{"number": 0, "content": "x" * 20 + "\n"}])
    page = client.get(f"/jobs/{job.pk}/").content.decode()
    assert 'data-truncated="true"' in page and "The log was truncated here" in page


def test_job_page_says_why_buildboard_ended_a_stale_job(client, job):
    Job.objects.filter(pk=job.pk).update(state="errored", error_reason="No state or log activity for 30 minutes")
    body = client.get(f"/jobs/{job.pk}/").content.decode()
    assert "Ended by buildboard" in body and "No state or log activity for 30 minutes" in body
