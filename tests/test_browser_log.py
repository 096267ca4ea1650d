"""The job page's log viewer in a real Chromium, against the real ASGI server and Redis."""

import httpx
import pytest
from django.db import transaction
from playwright.sync_api import expect

from jobs import services, tasks
from jobs.models import Job

pytestmark = pytest.mark.browser

AT = "2026-11-26T10:00:00+00:00"
E = "\x1b"

FOLDED_LOG = (
    f"travis_fold:start:system_info\r{E}[0K{E}[33;1mBuild system information{E}[0m\n"
    "Build language: python\n"
    "Build image: focal\n"
    f"travis_fold:end:system_info\r{E}[0K\n"
    f"travis_fold:start:git.checkout\r{E}[0Ktravis_time:start:0a1b\r{E}[0K$ git clone https://example.com/rocket.git\n"
    "Cloning into 'rocket'...\n"
    f"travis_time:end:0a1b:start=1,finish=2,duration=1534000000\r{E}[0K\n"
    f"travis_fold:end:git.checkout\r{E}[0K\n"
    f"{E}[32mgreen{E}[0m {E}[1;31mbold red{E}[0m {E}[38;5;208morange{E}[0m {E}[38;2;10;200;250mtruecolor{E}[0m\n"
    "progress 10%\rprogress 50%\rprogress 100%\n"
    f"travis_fold:start:script\r{E}[0K$ pytest\n"
    + "".join(f"test line {i}\n" for i in range(30))
    + 'The command "pytest" exited with 1.\n'
    f"travis_fold:end:script\r{E}[0K\n"
    "Done. Your build exited with 1.\n"
)

HOSTILE_LOG = (
    "<script>window.pwned = 'script'</script>\n"
    "<img src=x onerror=\"window.pwned = 'img'\">\n"
    f"{E}]8;;javascript:window.pwned='osc8'{E}\\click me{E}]8;;{E}\\\n"
    f"{E}]8;;JaVaScRiPt:alert(1){E}\\and me{E}]8;;{E}\\ {E}]8;;data:text/html,<b>x</b>{E}\\data{E}]8;;{E}\\\n"
    f"{E}]8;;https://example.com/ok{E}\\a fine link{E}]8;;{E}\\\n"
    f"travis_fold:start:<img/src=x/onerror=alert(2)>\r{E}[0K\"><svg onload=alert(3)>\n"
    f"{E}[31m<iframe src=javascript:alert(4)>{E}[0m &amp; &lt;b&gt;\n"
    f"{E}]0;<script>alert(5)</script>{E}\\title set\n"
)


def store(job, parts, *, announce=True):
    """Store parts as the ingestion task does; without `announce`, as if the frame was lost."""
    if announce:
        tasks.ingest_log_parts(job.pk, job.attempt, parts)
        return
    with transaction.atomic():
        Job.objects.select_for_update().get(pk=job.pk).store_log_parts(job.attempt, parts)


def lines(*numbers):
    return [{"number": n, "content": f"line {n}\n"} for n in numbers]


def finished_job_with_log(job, log, state="failed"):
    tasks.apply_job_state(job.pk, 1, "started", AT, worker="w1")
    tasks.ingest_log_parts(job.pk, 1, [{"number": 0, "content": log, "final": True}])
    tasks.apply_job_state(job.pk, 1, state, AT, exit_code=1 if state == "failed" else 0)


def open_job(page, base, job, suffix=""):
    page.goto(f"{base}/jobs/{job.pk}/{suffix}")
    expect(page.locator(".logview")).to_have_attribute("data-status", "live")


def shown_text(page) -> list[str]:
    return page.evaluate("window.buildboardLog.model.text")


def test_a_part_posted_to_the_api_appears_on_the_open_job_page(live_system, page, job, auth):
    open_job(page, live_system, job)
    response = httpx.post(f"{live_system}/api/v1/jobs/{job.pk}/log", headers=auth,
                          json={"parts": [{"number": 0, "content": "hello from the worker\n"}]})
    assert response.status_code == 202
    expect(page.locator(".ln .t", has_text="hello from the worker")).to_be_visible(timeout=15000)
    httpx.post(f"{live_system}/api/v1/jobs/{job.pk}/state", headers=auth, json={"state": "started"})
    expect(page.locator("#job-state")).to_have_text("started", timeout=15000)
    assert page.js_errors == []


def test_log_stream_survives_reconnects_duplicates_reordering_lost_frames_and_restart(asgi_server, page, job):
    store(job, lines(0, 1, 2))
    open_job(page, asgi_server, job)
    expect(page.locator(".ln")).to_have_count(3)

    # The connection drops; parts written meanwhile arrive after the reconnect, once each.
    page.evaluate("window.buildboardLog.stream.socket.drop()")
    store(job, lines(3, 4))
    expect(page.locator(".logview")).to_have_attribute("data-status", "live")
    store(job, lines(5))
    page.wait_for_function("() => window.buildboardLog.model.text.length === 6")

    # A duplicate is dropped; a part ahead of a gap waits for it.
    page.evaluate("""() => {
        const s = window.buildboardLog.stream;
        s.frame({type: 'log.parts', attempt: 1, persisted_through: 5, parts: [{number: 4, content: 'line 4\\n'}]});
        s.frame({type: 'log.parts', attempt: 1, persisted_through: 5, parts: [{number: 7, content: 'line 7\\n'}]});
    }""")
    assert shown_text(page) == [f"line {n}" for n in range(6)]
    page.evaluate("""window.buildboardLog.stream.frame(
        {type: 'log.parts', attempt: 1, persisted_through: 5, parts: [{number: 6, content: 'line 6\\n'}]})""")
    assert shown_text(page) == [f"line {n}" for n in range(8)]

    # A lost frame: part 9's doorbell never rings, part 10's does; the gap is refetched over HTTP.
    store(job, lines(8))
    store(job, lines(9), announce=False)
    store(job, lines(10))
    page.wait_for_function("() => window.buildboardLog.model.text.length === 11", timeout=10000)
    assert shown_text(page) == [f"line {n}" for n in range(11)]
    expect(page.locator(".ln")).to_have_count(11)

    # A restart is a new attempt: the old log goes, the new one streams in.
    tasks.apply_job_state(job.pk, 1, "failed", AT, exit_code=1)
    job.refresh_from_db()
    assert services.job_restart(job=job)
    expect(page.locator("[data-role=attempt]")).to_have_text("2")
    store(job, [{"number": 0, "content": "second attempt\n"}])
    page.wait_for_function("() => window.buildboardLog.model.text.join() === 'second attempt'")
    assert page.js_errors == []


def test_folds_line_links_and_search(asgi_server, page, job):
    finished_job_with_log(job, FOLDED_LOG)
    open_job(page, asgi_server, job)
    fold = page.locator("button.fold", has_text="system_info")
    script_fold = page.locator("button.fold", has_text="script")
    expect(fold).to_have_attribute("aria-expanded", "false")  # collapsed once the job finished ...
    expect(script_fold).to_have_attribute("aria-expanded", "true")  # ... except where it failed
    expect(page.locator(".ln", has_text="Build language")).to_have_count(0)
    fold.click()
    expect(page.locator(".ln", has_text="Build language")).to_be_visible()
    expect(fold).to_have_attribute("aria-expanded", "true")
    fold.press("Enter")
    expect(page.locator(".ln", has_text="Build language")).to_have_count(0)
    expect(page.locator(".ln", has_text="git clone").locator(".dur")).to_have_text("1.53 s")
    expect(page.locator(".ln", has_text="progress")).to_have_text("7progress 100%")
    assert "a-b" in page.locator(".ln", has_text="bold red").inner_html()

    # Search counts every occurrence and steps through them.
    page.keyboard.press("/")
    page.keyboard.type("test line 2")
    page.keyboard.press("Enter")
    expect(page.locator("[data-role=search-count]")).to_have_text("1 of 11")
    expect(page.locator("mark.current")).to_have_text("test line 2")
    page.keyboard.press("Enter")
    expect(page.locator("[data-role=search-count]")).to_have_text("2 of 11")
    expect(page.locator(".ln.current .n")).to_have_text("29")

    # #L5-L7 highlights the range, opening the fold line 5 is in; shift-click makes a range.
    page.goto(f"{asgi_server}/jobs/{job.pk}/#L5-L7")
    expect(page.locator(".ln.hl")).to_have_count(3)
    expect(page.locator(".ln.hl .n")).to_have_text(["5", "6", "7"])
    expect(page.locator(".ln.hl").first).to_be_in_viewport()
    expect(page.locator(".ln.hl").first).to_contain_text("Cloning into")
    page.locator(".ln .n", has_text="12").first.click()
    page.locator(".ln .n", has_text="15").first.click(modifiers=["Shift"])
    assert page.evaluate("location.hash") == "#L12-L15"
    expect(page.locator(".ln.hl")).to_have_count(4)
    assert page.js_errors == []


def test_hostile_log_content_executes_nothing(asgi_server, page, job):
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    finished_job_with_log(job, HOSTILE_LOG, state="passed")
    open_job(page, asgi_server, job)
    expect(page.locator(".ln", has_text="<script>window.pwned")).to_be_visible()
    page.locator("[data-role=search]").fill("<img")
    page.keyboard.press("Enter")
    page.locator("button.fold").first.click()
    page.locator("button.fold").first.click()
    page.wait_for_timeout(300)
    assert dialogs == []
    assert page.evaluate("window.pwned") is None
    log = page.locator(".log")
    assert log.locator("img, iframe, svg, script").count() == 0
    hrefs = page.evaluate("[...document.querySelectorAll('.log a')].map(a => a.getAttribute('href'))")
    assert not [h for h in hrefs if not h.startswith("#L") and not h.startswith("https://")]
    assert page.locator(".log a[href='https://example.com/ok']").get_attribute("rel") == "nofollow noopener noreferrer"
    expect(page.locator(".ln", has_text="click me")).to_be_visible()
    expect(page.locator(".ln", has_text="&amp; &lt;b&gt;")).to_be_visible()
    expect(page.locator(".ln", has_text="title set")).not_to_contain_text("alert(5)")
    assert page.js_errors == []


def test_follow_mode_keeps_the_newest_line_in_view_until_the_reader_scrolls_up(asgi_server, page, job):
    tasks.apply_job_state(job.pk, 1, "started", AT)
    store(job, [{"number": 0, "content": "".join(f"early {i}\n" for i in range(200))}])
    open_job(page, asgi_server, job)
    expect(page.locator(".ln", has_text="early 199")).to_be_in_viewport()
    store(job, [{"number": 1, "content": "".join(f"later {i}\n" for i in range(100))}])
    expect(page.locator(".ln", has_text="later 99")).to_be_in_viewport()
    expect(page.locator("[data-role=follow]")).to_be_hidden()

    page.mouse.move(400, 400)
    page.mouse.wheel(0, -3000)
    follow = page.locator("[data-role=follow]")
    expect(follow).to_be_visible()
    store(job, [{"number": 2, "content": "latest line\n"}])
    expect(page.locator(".ln", has_text="latest line")).to_have_count(0)  # not drawn: far below the view
    follow.click()
    expect(page.locator(".ln", has_text="latest line")).to_be_in_viewport()
    expect(follow).to_be_hidden()
    assert page.js_errors == []
