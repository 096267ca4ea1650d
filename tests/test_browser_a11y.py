"""Every page people use, audited by axe-core in light and dark mode, and laid out on a 390 px phone."""

import pytest
from playwright.sync_api import expect

from incidents import fastpath

from .browser import axe_violations, failed_build, horizontal_overflow, shoot, sign_in, status_site

pytestmark = pytest.mark.browser

PAGES = ["home", "repository", "build", "job", "status", "incident", "subscribe", "login",
         "manage", "manage-incident", "fleet", "alerts"]
STAFF_PAGES = {"manage", "manage-incident", "fleet", "alerts"}


@pytest.fixture
def site(asgi_server, alice):
    fastpath.forget()
    build = failed_build()
    incident = status_site(alice)
    failing = build.jobs.order_by("id").first()
    return asgi_server, {
        "home": "/",
        "repository": "/acme/rocket/",
        "build": f"/builds/{build.pk}/",
        "job": f"/jobs/{failing.pk}/",
        "status": "/status/",
        "incident": f"/status/incidents/{incident.code}/",
        "subscribe": "/status/subscribe/",
        "login": "/login/",
        "manage": "/status/manage/",
        "manage-incident": f"/status/manage/incidents/{incident.code}/",
        "fleet": "/fleet/",
        "alerts": "/alerts/",
    }


def open_page(browser, base, path, *, staff_user=None, **context_args):
    context = browser.new_context(**context_args)
    if staff_user is not None:
        sign_in(context, base, staff_user)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(base + path)
    page.wait_for_load_state("networkidle")
    return context, page, errors


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_no_serious_or_critical_violations(site, browser, alice, scheme):
    base, paths = site
    found = {}
    for name in PAGES:
        context, page, errors = open_page(browser, base, paths[name], color_scheme=scheme,
                                          staff_user=alice if name in STAFF_PAGES else None)
        if name == "job":
            expect(page.locator(".ln").first).to_be_visible()
        for v in axe_violations(page):
            for node in v["nodes"]:
                detail = node["summary"].splitlines()[-1].strip()
                found.setdefault(name, []).append(f"{v['id']} {node['target']}: {detail}")
        assert errors == [], (name, errors)
        context.close()
    assert found == {}, "\n".join(f"{p}: {line}" for p, lines in found.items() for line in lines)


@pytest.mark.parametrize("signed_in", [False, True])
def test_a_390px_phone_never_scrolls_sideways(site, browser, alice, signed_in):
    base, paths = site
    found = {}
    for name in PAGES:
        if name in STAFF_PAGES and not signed_in:
            continue
        context, page, errors = open_page(browser, base, paths[name], viewport={"width": 390, "height": 844},
                                          is_mobile=True, has_touch=True, staff_user=alice if signed_in else None)
        if name == "job":
            expect(page.locator(".ln").first).to_be_visible()
        overflow = horizontal_overflow(page)
        if overflow:
            found[name] = overflow
        if name in ("home", "build", "repository"):
            # Builds and jobs are stacked cards, not a wide table scrolled inside its box.
            scrolled = page.evaluate("""() => [...document.querySelectorAll('.table-wrap')]
                .filter(w => w.scrollWidth > w.clientWidth + 1).length""")
            if scrolled:
                found[name] = found.get(name, []) + [f"{scrolled} table(s) scroll sideways"]
        if name == "job" and signed_in:
            shoot(page, "phone-job", full_page=False)
        if name in ("home", "build", "status"):
            shoot(page, f"phone-{name}{'-staff' if signed_in else ''}", full_page=False)
        context.close()
    assert found == {}, "\n".join(f"{p}: {item}" for p, items in found.items() for item in items)
