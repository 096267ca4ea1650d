"""What users of other CI products look for on the build and job pages and the dashboards, in Chromium."""

import re

import pytest
from playwright.sync_api import expect

from jobs import services, tasks
from jobs.models import Job

from .browser import AT, FAILING_LOG, failed_build, shoot, sign_in

pytestmark = pytest.mark.browser


@pytest.fixture
def operator_page(browser, asgi_server, dave):
    """dave has the operate role in acme, whose repositories the builds here are in."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    sign_in(context, asgi_server, dave)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.js_errors = errors
    yield pg
    context.close()


def restart(job: Job) -> Job:
    job.refresh_from_db()
    assert services.job_restart(job=job)
    return job


def test_attempt_picker_reads_each_earlier_attempts_log(asgi_server, operator_page):
    build = failed_build()
    job = build.jobs.order_by("id").first()
    restart(job)
    tasks.apply_job_state(job.pk, 2, "started", AT, worker="worker-3", worker_version="v2.5.1")
    tasks.ingest_log_parts(job.pk, 2, [{"number": 0, "content": "second attempt: all green\n"}])
    page = operator_page
    page.goto(f"{asgi_server}/jobs/{job.pk}/")
    expect(page.locator(".ln", has_text="second attempt: all green")).to_be_visible()
    picker = page.get_by_label("Attempt")
    expect(picker).to_have_value("2")
    expect(page.locator(".page-head").get_by_role("button", name="Cancel job")).to_be_visible()
    expect(page.locator("[data-role=attempt-go]")).to_be_hidden()  # choosing is enough with JavaScript
    shoot(page, "attempt-picker-latest", clip={"x": 0, "y": 0, "width": 1280, "height": 520})

    picker.select_option("1")
    page.wait_for_url(re.compile(r"\?attempt=1$"))
    expect(page.locator(".ln", has_text="AssertionError: expected 200")).to_be_visible()
    expect(page.locator(".ln", has_text="second attempt")).to_have_count(0)
    expect(page.locator(".attempt-notice")).to_contain_text("You are reading attempt 1 of 2")
    expect(page.get_by_role("link", name="Raw log")).to_have_attribute("href", f"/jobs/{job.pk}/log.txt?attempt=1")
    expect(page.get_by_role("button", name="Cancel job")).to_have_count(0)  # acts on the latest attempt only
    shoot(page, "attempt-picker-earlier", clip={"x": 0, "y": 0, "width": 1280, "height": 620})
    raw = page.evaluate("(url) => fetch(url).then(r => r.text())", f"/jobs/{job.pk}/log.txt?attempt=1")
    assert "AssertionError" in raw and "second attempt" not in raw
    assert page.js_errors == []


def test_build_page_shows_where_each_failed_job_failed_and_which_were_restarted(asgi_server, page):
    build = failed_build()
    failing, passing = build.jobs.order_by("id")
    page.goto(f"{asgi_server}/builds/{build.pk}/")
    failure = page.locator(".failure")
    expect(failure).to_have_count(1)
    expect(failure.locator("h3")).to_contain_text(f"Job {failing.number}")
    expect(failure.locator("h3")).to_contain_text("in script")
    excerpt = failure.locator("pre.excerpt")
    expect(excerpt).to_contain_text("AssertionError: expected 200, got 500")
    expect(excerpt).to_contain_text('The command "pytest" exited with 1.')
    assert "\x1b" not in excerpt.inner_text() and "travis_" not in excerpt.inner_text()
    lines = failure.get_by_role("link", name=re.compile(r"lines \d+–\d+ in the log"))
    href = lines.get_attribute("href")
    first, last = map(int, re.search(r"#L(\d+)-L(\d+)$", href).groups())
    # The numbers are the job page's: line `last` there is the fold's last line.
    lines.click()
    expect(page.locator(".ln.hl")).to_have_count(last - first + 1)
    expect(page.locator(".ln.hl").last).to_contain_text('The command "pytest" exited with 1.')

    # The passed job restarts and fails live: the page marks it restarted and shows its failure too.
    page.goto(f"{asgi_server}/builds/{build.pk}/")
    expect(page.locator("[data-role=live]")).to_have_attribute("data-status", "live")
    restart(passing)
    row = page.locator(f"tr[data-job-id='{passing.pk}']")
    expect(row.locator("[data-role=attempt]")).to_have_text("attempt 2")
    tasks.apply_job_state(passing.pk, 2, "started", AT)
    tasks.ingest_log_parts(passing.pk, 2, [{"number": 0, "content": "".join(f"step {i}\n" for i in range(30))
                                            + "Done. Your build exited with 3.\n", "final": True}])
    tasks.apply_job_state(passing.pk, 2, "failed", AT, exit_code=3)
    expect(page.locator(".failure")).to_have_count(2)
    second = page.locator(".failure", has_text=f"Job {passing.number}")
    expect(second.locator("pre.excerpt")).to_contain_text("step 29")
    expect(second.locator("pre.excerpt")).not_to_contain_text("step 10\n")  # the last 20 lines only
    assert page.js_errors == []


def test_operators_restart_failed_jobs_cancel_and_restart_a_whole_build(asgi_server, page, operator_page, alice):
    build = failed_build()
    failing, passing = build.jobs.order_by("id")
    page.goto(f"{asgi_server}/builds/{build.pk}/")
    expect(page.get_by_role("button", name="Restart failed jobs")).to_have_count(0)  # not for anonymous readers
    sign_in(page.context, asgi_server, alice)  # staff read everything but operate only where granted
    page.reload()
    expect(page.get_by_role("heading", name="Where it failed")).to_be_visible()
    expect(page.get_by_role("button", name="Restart failed jobs")).to_have_count(0)

    operator_page.goto(f"{asgi_server}/builds/{build.pk}/")
    operator_page.get_by_role("button", name="Restart failed jobs").click()
    expect(operator_page.get_by_role("status")).to_contain_text("Restarted 1 failed job.")
    failing.refresh_from_db()
    passing.refresh_from_db()
    assert (failing.attempt, failing.state, passing.attempt) == (2, "queued", 1)

    operator_page.get_by_role("button", name="Cancel build").click()
    expect(operator_page.get_by_role("status")).to_contain_text("Asked 1 running job to stop.")
    failing.refresh_from_db()
    assert failing.cancel_requested
    tasks.apply_job_state(failing.pk, 2, "canceled", AT)

    operator_page.goto(f"{asgi_server}/builds/{build.pk}/")
    operator_page.get_by_role("button", name="Restart build").click()
    expect(operator_page.get_by_role("status")).to_contain_text("Restarted 2 jobs.")
    assert sorted(Job.objects.filter(build=build).values_list("attempt", flat=True)) == [2, 3]
    expect(operator_page.locator("h2", has_text="Jobs")).to_contain_text("2 restarted")
    assert operator_page.js_errors == []


def test_jump_to_first_error_links_and_timestamps_in_the_log(asgi_server, page, job):
    tasks.apply_job_state(job.pk, 1, "started", AT)
    noise = "".join(f"compiling module {i}\n" for i in range(120))
    log = FAILING_LOG.replace("Successfully installed django\n", "Successfully installed django\n" + noise)
    tasks.ingest_log_parts(job.pk, 1, [{"number": 0, "content": log + "see javascript:alert(1) and "
                                        "https://example.com/a?b=1&c=<2>.\n", "final": True}])
    tasks.apply_job_state(job.pk, 1, "failed", AT, exit_code=1)
    page.goto(f"{asgi_server}/jobs/{job.pk}/")
    expect(page.locator(".ln").first).to_be_visible()

    page.get_by_role("button", name="Jump to first error").click()
    highlighted = page.locator(".ln.hl")
    expect(highlighted).to_have_count(1)
    expect(highlighted).to_contain_text("tests/test_app.py::test_login FAILED")
    expect(highlighted).to_be_in_viewport()
    assert re.fullmatch(r"#L\d+", page.evaluate("location.hash"))

    link = page.locator(".log a[href='https://example.com/ci/help']")
    expect(link).to_have_attribute("rel", "nofollow noopener noreferrer")
    page.locator(".ln", has_text="see javascript").scroll_into_view_if_needed()
    tail = page.locator(".ln", has_text="see javascript")
    expect(tail.locator(".t a")).to_have_count(1)
    expect(tail.locator(".t a")).to_have_attribute("href", "https://example.com/a?b=1&c=")  # a URL ends at <
    expect(tail).to_contain_text("javascript:alert(1) and https://example.com/a?b=1&c=<2>.")

    expect(page.locator(".ln .ts")).to_have_count(0)
    page.get_by_role("button", name="Timestamps").click()
    expect(page.get_by_role("button", name="Timestamps")).to_have_attribute("aria-pressed", "true")
    stamp = page.locator(".ln .ts").first
    expect(stamp).to_have_text(re.compile(r"^\d\d:\d\d:\d\d"))
    assert page.js_errors == []


def test_the_job_header_stays_in_view_while_following_the_log(asgi_server, operator_page, job):
    tasks.apply_job_state(job.pk, 1, "started", AT, worker="worker-9", worker_version="v2.5.0")
    tasks.ingest_log_parts(job.pk, 1, [{"number": 0, "content": "".join(f"step {i}\n" for i in range(300))}])
    page = operator_page
    page.goto(f"{asgi_server}/jobs/{job.pk}/")
    expect(page.locator(".logview")).to_have_attribute("data-status", "live")
    jobbar = page.locator("[data-role=jobbar]")
    tasks.ingest_log_parts(job.pk, 1, [{"number": 1, "content": "".join(f"later {i}\n" for i in range(50))}])
    expect(page.locator(".ln", has_text="later 49")).to_be_in_viewport()  # following the tail
    expect(jobbar).to_be_visible()
    expect(jobbar.locator("[data-role=state]")).to_have_text("started")
    expect(jobbar.locator("[data-role=worker]")).to_have_text("worker-9 v2.5.0")
    expect(jobbar.get_by_role("button", name="Cancel job")).to_be_visible()
    expect(jobbar.locator("[data-role=duration]")).not_to_have_text("–")
    shoot(page, "sticky-job-header")

    tasks.apply_job_state(job.pk, 1, "failed", AT, exit_code=1)
    expect(jobbar.locator("[data-role=state]")).to_have_text("failed")
    expect(jobbar.get_by_role("button", name="Restart job")).to_be_visible()
    page.evaluate("window.scrollTo(0, 0)")
    expect(jobbar).to_be_hidden()
    assert page.js_errors == []


def test_dashboard_times_empty_filters_and_paging(asgi_server, page, make_build):
    for _ in range(51):
        make_build()
    page.goto(f"{asgi_server}/")
    time = page.locator("tbody time[data-relative]").first
    expect(time).to_have_text("just now")
    title = time.get_attribute("title")
    assert re.search(r"\d{4}", title) and re.search(r"(UTC|GMT|[A-Z]{3,4})", title), title
    page.get_by_role("link", name="Older builds →").click()
    expect(page.locator("tbody tr")).to_have_count(1)
    page.get_by_role("link", name="← Newer builds").click()
    expect(page.locator("tbody tr")).to_have_count(50)
    page.goto(f"{asgi_server}/?branch=nothing-like-this")
    expect(page.get_by_text("No builds match these filters")).to_be_visible()
    assert page.js_errors == []
