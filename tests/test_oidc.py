"""Single sign-on end to end: Chromium signs in through a real OpenID Connect provider (panva/oidc-provider under
Node, started here from tests/oidc), and the provider's groups put the new account into its mapped team."""

import json
import shutil
import subprocess
import time

import httpx
import pytest
from django.contrib.auth import get_user_model

from accounts.models import Grant, Organization, Team
from jobs.models import Repository, create_build

from .conftest import BASE_DIR, free_port, start_uvicorn, stop_process

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.django_db(transaction=True),
              # The provider signs its tokens with Node's real clock (iat, exp), which BB_TEST_NOW cannot move;
              # a travelled server would find them issued in its past or future.
              pytest.mark.real_clock("the OpenID provider under Node runs on the real clock")]

OIDC_DIR = BASE_DIR / "tests" / "oidc"
ACCOUNTS = {"dana": {"email": "dana@example.com", "name": "Dana Scully", "groups": ["acme-devs", "staff-ish"]}}


@pytest.fixture
def provider_and_server():
    assert shutil.which("node"), "Node is needed for the OpenID Connect provider (.ci/run installs it)"
    assert (OIDC_DIR / "node_modules" / "oidc-provider").is_dir(), "run `npm ci` in tests/oidc (.ci/run does)"
    op_port, web_port = free_port(), free_port()
    client_id, client_secret = "buildboard-test", "s3cret-of-the-test-client"
    op = subprocess.Popen(["node", "provider.js"], cwd=OIDC_DIR, stdout=subprocess.PIPE, text=True, env={
        "PATH": "/usr/bin:/bin:/usr/local/bin", "OIDC_PORT": str(op_port), "OIDC_CLIENT_ID": client_id,
        "OIDC_CLIENT_SECRET": client_secret, "OIDC_REDIRECT_URI": f"http://127.0.0.1:{web_port}/oidc/callback/",
        "OIDC_ACCOUNTS": json.dumps(ACCOUNTS)})
    web = None
    try:
        assert op.stdout.readline().startswith("listening"), "the provider did not start"
        issuer = f"http://127.0.0.1:{op_port}"
        discovery = httpx.get(f"{issuer}/.well-known/openid-configuration").json()
        assert discovery["issuer"] == issuer
        web, url = start_uvicorn(web_port, OIDC_RP_CLIENT_ID=client_id, OIDC_RP_CLIENT_SECRET=client_secret,
                                 OIDC_OP_AUTHORIZATION_ENDPOINT=discovery["authorization_endpoint"],
                                 OIDC_OP_TOKEN_ENDPOINT=discovery["token_endpoint"],
                                 OIDC_OP_USER_ENDPOINT=discovery["userinfo_endpoint"],
                                 OIDC_OP_JWKS_ENDPOINT=discovery["jwks_uri"],
                                 OIDC_RP_SCOPES="openid email profile groups")
        yield url
    finally:
        if web is not None:
            stop_process(web)
        stop_process(op)


def test_sign_in_through_the_provider_maps_groups_to_teams(provider_and_server, page):
    url = provider_and_server
    acme = Organization.objects.get_or_create(name="acme")[0]
    team = Team.objects.create(organization=acme, name="devs", sso_groups="acme-devs")
    Grant.objects.create(organization=acme, team=team, role="read")
    Repository.objects.create(owner="acme", name="secret", private=True)
    build = create_build(repository="acme/secret", branch="main", commit="abc", jobs=[{}])

    assert page.goto(f"{url}/builds/{build.pk}/").status == 404  # private, and nobody signed in yet
    page.goto(f"{url}/login/?next=/builds/{build.pk}/")
    page.click("text=Sign in with single sign-on")
    page.wait_for_selector("input[name=login]")  # the provider's own sign-in page
    assert page.url.startswith("http://127.0.0.1:") and "/interaction/" in page.url
    page.fill("input[name=login]", "dana")
    page.fill("input[name=password]", "dana-password")
    page.click("button[type=submit]")
    page.wait_for_selector("button:has-text('Continue')")  # consent
    page.click("button:has-text('Continue')")
    page.wait_for_url(f"{url}/builds/{build.pk}/", timeout=15000)
    assert "acme/secret" in page.content()
    assert "Log out dana" in page.content()

    dana = get_user_model().objects.get(username="dana")
    assert dana.email == "dana@example.com" and not dana.has_usable_password() and not dana.is_staff
    assert team.members.filter(pk=dana.pk).exists()
    assert page.js_errors == []


def test_a_wrong_password_at_the_provider_signs_nobody_in(provider_and_server, page):
    url = provider_and_server
    page.goto(f"{url}/login/")
    page.click("text=Sign in with single sign-on")
    page.wait_for_selector("input[name=login]")
    page.fill("input[name=login]", "dana")
    page.fill("input[name=password]", "wrong")
    page.click("button[type=submit]")
    deadline = time.monotonic() + 5
    while "wrong login or password" not in page.content() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "wrong login or password" in page.content()
    assert not get_user_model().objects.filter(username="dana").exists()
