"""Dashboards in a real Chromium: new builds and state changes appear without a reload."""

import httpx
import pytest
from playwright.sync_api import expect

from jobs import tasks
from jobs.models import Repository

pytestmark = pytest.mark.browser

AT = "2026-11-26T10:00:00+00:00"


def create_build(base, auth, repository, branch="main"):
    response = httpx.post(f"{base}/api/v1/builds", headers=auth, json={
        "repository": repository, "branch": branch, "commit": "feedface00", "message": f"build of {repository}",
        "jobs": [{"config": {"os": "linux"}}, {"allow_failure": True}]})
    assert response.status_code == 201, response.text
    return response.json()


def test_home_and_build_pages_follow_builds_live_and_never_show_private_ones(asgi_server, page, browser, auth, alice):
    Repository.objects.create(owner="acme", name="secret", private=True)
    page.goto(f"{asgi_server}/")
    expect(page.locator("[data-role=live]")).to_have_attribute("data-status", "live")

    public = create_build(asgi_server, auth, "acme/rocket")
    private = create_build(asgi_server, auth, "acme/secret")
    row = page.locator(f"tr[data-build-id='{public['id']}']")
    expect(row).to_contain_text("acme/rocket")
    expect(row.locator("[data-role=state]")).to_have_text("created")

    build_page = page.context.new_page()
    build_page.goto(f"{asgi_server}/builds/{public['id']}/")
    expect(build_page.locator("[data-role=live]")).to_have_attribute("data-status", "live")

    job_id = public["jobs"][0]["id"]
    tasks.apply_job_state(job_id, 1, "started", AT, worker="worker-7")
    tasks.apply_job_state(private["jobs"][0]["id"], 1, "started", AT)
    expect(row.locator("[data-role=state]")).to_have_text("running")
    job_row = build_page.locator(f"tr[data-job-id='{job_id}']")
    expect(job_row.locator("[data-role=state]")).to_have_text("started")
    expect(job_row.locator("[data-role=worker]")).to_have_text("worker-7")
    expect(build_page.locator(".page-head [data-role=state]")).to_have_text("running")

    tasks.apply_job_state(job_id, 1, "failed", AT, exit_code=1)
    expect(job_row.locator("[data-role=exit-code]")).to_have_text("1")
    expect(row.locator("[data-role=state]")).to_have_text("failed")  # the other job is allowed to fail

    assert page.locator(f"tr[data-build-id='{private['id']}']").count() == 0
    assert "acme/secret" not in page.content()

    # Staff see private builds arrive too.
    staff = browser.new_context()
    staff_page = staff.new_page()
    staff_page.goto(f"{asgi_server}/login/")
    staff_page.fill("input[name=username]", "alice")
    staff_page.fill("input[name=password]", "alice-password")
    staff_page.click("button[type=submit]")
    expect(staff_page.locator("[data-role=live]")).to_have_attribute("data-status", "live")
    secret = create_build(asgi_server, auth, "acme/secret", branch="hidden")
    expect(staff_page.locator(f"tr[data-build-id='{secret['id']}']")).to_contain_text("acme/secret")
    staff.close()
    assert page.js_errors == []
