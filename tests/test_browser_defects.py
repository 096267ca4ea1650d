"""The defects a new user found (issue 13), each pinned down in a real Chromium."""

import re

import httpx
import pytest
from playwright.sync_api import expect

from incidents import fastpath
from incidents.models import Component, ComponentStatus
from jobs import services, tasks

from .browser import AT, shoot, sign_in, status_site

pytestmark = pytest.mark.browser


@pytest.fixture
def staff_page(browser, asgi_server, alice):
    context = browser.new_context()
    sign_in(context, asgi_server, alice)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.js_errors = errors
    yield pg
    context.close()


def box(locator) -> dict:
    b = locator.bounding_box()
    assert b is not None
    return b


def assert_checkbox_beside_its_text(label) -> None:
    """A checkbox sits at the start of its label's line, not stretched and not centred above the text."""
    checkbox = box(label.locator("input[type=checkbox]"))
    whole = box(label)
    assert checkbox["width"] < 30
    assert abs(checkbox["x"] - whole["x"]) < 4
    assert whole["height"] < 2.2 * checkbox["height"] + 8  # one line, not the box above its text


# 1 ------------------------------------------------------------------------------------------------

def test_multi_checkbox_fields_have_one_label_per_box_beside_it(asgi_server, page, staff_page, alice):
    fastpath.forget()
    Component.objects.create(name="Linux builds")
    Component.objects.create(name="macOS builds")
    page.goto(f"{asgi_server}/status/subscribe/")
    assert page.locator("label label").count() == 0
    boxes = page.locator("form label:has(input[type=checkbox])")
    expect(boxes).to_have_count(4)  # the components, in the email form and in the webhook form
    for i in range(4):
        assert_checkbox_beside_its_text(boxes.nth(i))

    for path in ("/status/manage/incidents/new/", "/status/manage/maintenance/new/"):
        staff_page.goto(asgi_server + path)
        assert staff_page.locator("label label").count() == 0
        notify = staff_page.locator("label", has_text="Notify subscribers")
        assert_checkbox_beside_its_text(notify)
        form_left = box(staff_page.locator("form.stack"))["x"]
        assert abs(box(notify)["x"] - form_left) < 4  # not drifting to the right
    assert page.js_errors == [] and staff_page.js_errors == []


# 2 ------------------------------------------------------------------------------------------------

def test_resolving_returns_the_components_to_operational_and_the_page_agrees_with_the_json(
        asgi_server, page, staff_page, alice):
    fastpath.forget()
    incident = status_site(alice)
    page.goto(f"{asgi_server}/status/")
    description = httpx.get(f"{asgi_server}/api/v2/status.json").json()["status"]["description"]
    assert page.locator("#banner-title").inner_text().lower() == description.lower()

    staff_page.goto(f"{asgi_server}/status/manage/incidents/{incident.code}/")
    restore = staff_page.get_by_label("Return the affected components to operational")
    staff_page.get_by_label("Status", exact=True).select_option("resolved")
    expect(restore).to_be_visible()
    expect(restore).to_be_checked()
    staff_page.get_by_label("Message").fill("Fixed: the new image is out.")
    staff_page.get_by_role("button", name="Post update").click()
    expect(staff_page.locator(".flash")).to_contain_text("Update posted")

    assert set(Component.objects.values_list("status", flat=True)) == {ComponentStatus.OPERATIONAL}
    page.goto(f"{asgi_server}/status/")
    expect(page.locator("#banner-title")).to_have_text("All Systems Operational", ignore_case=True)
    status = httpx.get(f"{asgi_server}/api/v2/status.json").json()["status"]
    assert status == {"indicator": "none", "description": "All Systems Operational"}
    assert page.js_errors == [] and staff_page.js_errors == []


def test_staff_may_resolve_and_keep_a_component_degraded(asgi_server, staff_page, alice):
    fastpath.forget()
    incident = status_site(alice)
    staff_page.goto(f"{asgi_server}/status/manage/incidents/{incident.code}/")
    staff_page.get_by_label("Status", exact=True).select_option("resolved")
    staff_page.get_by_label("Return the affected components to operational").uncheck()
    staff_page.get_by_label("Message").fill("Resolved; the macOS pool stays slow.")
    staff_page.get_by_role("button", name="Post update").click()
    expect(staff_page.locator(".flash")).to_contain_text("Update posted")
    assert Component.objects.get(name="Linux builds").status == ComponentStatus.DEGRADED_PERFORMANCE


# 3 ------------------------------------------------------------------------------------------------

def test_login_page_names_the_site_not_the_host(asgi_server, page):
    page.goto(f"{asgi_server}/login/")
    expect(page).to_have_title("Log in · buildboard")
    expect(page.locator("h1")).to_have_text("Log in to buildboard")
    assert "127.0.0.1" not in page.locator("header").inner_text()
    assert "127.0.0.1" not in page.title()


# 4 and 5 ------------------------------------------------------------------------------------------

def test_worker_version_stays_and_the_job_chip_follows_the_state(asgi_server, page, make_build):
    build = make_build(jobs=2)
    job = build.jobs.order_by("id").first()
    page.goto(f"{asgi_server}/jobs/{job.pk}/")
    expect(page.locator(".logview")).to_have_attribute("data-status", "live")
    chip = page.locator(".siblings [aria-current=page]")
    expect(chip).to_have_class("sib state-queued")

    tasks.apply_job_state(job.pk, 1, "started", AT, worker="worker-7", worker_version="v2.5.0")
    expect(page.locator("#job-state")).to_have_text("started")
    expect(page.locator("[data-role=worker]").first).to_have_text("worker-7 v2.5.0")
    expect(chip).to_have_class("sib state-started")

    tasks.apply_job_state(job.pk, 1, "failed", AT, exit_code=1)
    expect(chip).to_have_class("sib state-failed")
    job.refresh_from_db()
    services.job_restart(job=job)
    expect(page.locator("#job-state")).to_have_text("queued")
    expect(chip).to_have_class("sib state-queued")
    tasks.apply_job_state(job.pk, 2, "started", AT, worker="worker-8", worker_version="v2.6.0")
    expect(page.locator("#job-state")).to_have_text("started")
    expect(chip).to_have_class("sib state-started")
    expect(page.locator("[data-role=worker]").first).to_have_text("worker-8 v2.6.0")
    assert page.js_errors == []


# 6 ------------------------------------------------------------------------------------------------

def test_the_sticky_log_toolbar_meets_the_header_without_a_gap(asgi_server, page, job):
    tasks.apply_job_state(job.pk, 1, "started", AT)
    tasks.ingest_log_parts(job.pk, 1, [{"number": 0, "content": "".join(f"line {i}\n" for i in range(400))}])
    tasks.apply_job_state(job.pk, 1, "passed", AT, exit_code=0)
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(f"{asgi_server}/jobs/{job.pk}/")
    expect(page.locator(".ln").first).to_be_visible()
    page.mouse.move(600, 500)
    page.mouse.wheel(0, 3000)
    page.wait_for_timeout(200)
    header = box(page.locator("header.topbar"))
    jobbar = box(page.locator("[data-role=jobbar]"))  # the compact job header, once the page head is away
    toolbar = box(page.locator(".logbar"))
    assert header["y"] == 0
    gap = jobbar["y"] - (header["y"] + header["height"])
    assert -0.5 <= gap <= 0.5, f"{gap:.1f}px between the header and the compact job header"
    gap = toolbar["y"] - (jobbar["y"] + jobbar["height"])
    assert -0.5 <= gap <= 0.5, f"{gap:.1f}px between the compact job header and the log toolbar"


# 7 ------------------------------------------------------------------------------------------------

def test_head_of_the_raw_log_answers_like_get_without_a_body(asgi_server, page, job):
    tasks.ingest_log_parts(job.pk, 1, [{"number": 0, "content": "hello\n"}])
    page.goto(f"{asgi_server}/jobs/{job.pk}/")
    head = page.evaluate("""async (url) => {
        const r = await fetch(url, {method: 'HEAD'});
        return {status: r.status, type: r.headers.get('content-type'), body: await r.text()};
    }""", f"/jobs/{job.pk}/log.txt?ansi=0&download=1")
    assert head == {"status": 200, "type": "text/plain; charset=utf-8", "body": ""}


# 8: colour contrast is checked by axe-core over every page, see test_browser_a11y.py -------------

# 10 -----------------------------------------------------------------------------------------------

def test_uptime_says_how_many_days_it_covers(asgi_server, page):
    fastpath.forget()
    Component.objects.create(name="Linux builds")
    page.goto(f"{asgi_server}/status/")
    legend = page.locator(".uptime-legend")
    expect(legend).to_contain_text("100.0 % uptime over 1 day")
    expect(legend).not_to_contain_text("over 90 days")


# 11 -----------------------------------------------------------------------------------------------

def test_staff_actions_confirm_what_they_did(asgi_server, staff_page, alice):
    fastpath.forget()
    incident = status_site(alice)
    staff_page.goto(f"{asgi_server}/status/manage/")
    row = staff_page.locator("tr", has_text="macOS builds")
    row.get_by_role("combobox").select_option("major_outage")
    row.get_by_role("button", name="Set").click()
    expect(staff_page.get_by_role("status")).to_contain_text("macOS builds is now major outage")

    # Setting the status it already has still answers.
    row = staff_page.locator("tr", has_text="macOS builds")
    row.get_by_role("button", name="Set").click()
    expect(staff_page.get_by_role("status")).to_contain_text("macOS builds is already major outage")

    staff_page.goto(f"{asgi_server}/status/manage/incidents/{incident.code}/postmortem/")
    staff_page.get_by_label("Body").fill("## What happened\n\nThe image cache was cold.")
    staff_page.get_by_role("button", name="Publish").click()
    expect(staff_page.get_by_role("status")).to_contain_text("Postmortem published")
    assert staff_page.js_errors == []



# 9 ------------------------------------------------------------------------------------------------

def test_alert_evidence_reads_like_a_report(asgi_server, staff_page, make_build):
    from fleet.models import Alert
    from jobs.queries import job_sample

    jobs = list(make_build(jobs=3).jobs.all())
    for job in jobs:
        tasks.apply_job_state(job.pk, 1, "failed", "2026-11-26T10:00:00.123456+00:00", worker="ip-10-0-3-17",
                              worker_version="v2.5.0", exit_code=0)
        job.refresh_from_db()
    alert = Alert.objects.create(
        rule="inconsistent_jobs", subject="builds.linux@v2.5.0", title="3 jobs on builds.linux v2.5.0 contradict",
        evidence={"queue": "builds.linux", "worker_version": "v2.5.0", "inconsistent": 3, "finished": 40,
                  "oldest_queued_at": "2026-11-26T09:58:01.654321+00:00",
                  "workers": {"ip-10-0-3-17": 2, "ip-10-0-3-18": 1},
                  "jobs": [job_sample(j) for j in jobs]})
    staff_page.set_viewport_size({"width": 1024, "height": 800})
    staff_page.goto(f"{asgi_server}/alerts/{alert.pk}/")
    evidence = staff_page.locator("[data-role=evidence]")
    text = evidence.inner_text()  # as rendered, CSS text-transform included
    for raw in ("EXIT_CODE", "exit_code", "WORKER_VERSION", "worker_version", "V2.5.0", "oldest queued at"):
        assert raw not in text, raw
    assert "Exit code" in text and "Worker version" in text and "v2.5.0" in text
    assert not re.search(r"\d\d:\d\d:\d\d\.\d", text), "no microseconds"
    assert "2026-11-26 10:00:00 UTC" in text and "Oldest queued" in text
    for job in jobs:
        cell = evidence.locator("td", has=staff_page.get_by_role("link", name=f"Job {job.pk}", exact=True))
        height = box(cell)["height"]
        line = float(cell.evaluate("el => parseFloat(getComputedStyle(el).lineHeight)"))
        assert height < line * 1.5 + 16, "a job id stays on one line"
    expect(evidence.get_by_role("link", name=f"Job {jobs[0].pk}")).to_have_attribute("href", f"/jobs/{jobs[0].pk}/")
    evidence.scroll_into_view_if_needed()
    shoot(staff_page, "alert-evidence")
    assert staff_page.js_errors == []
