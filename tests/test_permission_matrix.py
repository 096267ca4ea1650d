"""The permission matrix: every URL pattern and websocket route, found through the resolvers themselves, crossed
with every kind of caller, over a public and a private repository, with the status each cell must get.

A route added later without an entry in ROUTES (or WEBSOCKETS) fails test_every_route_has_a_matrix_entry.
Denials are exact (401, 403, 404, a redirect to the login page); allowed cells accept the route's
success statuses (OK), since what a permitted request then does is the subject of other tests."""

import json
import time

import pytest
from asgiref.sync import async_to_sync
from asgiref.testing import ApplicationCommunicator
from channels.layers import channel_layers
from channels.routing import URLRouter
from django.contrib import admin
from django.contrib.auth.models import AnonymousUser
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from accounts.models import ApiToken, Grant, Membership, Organization
from buildboard.routing import websocket_urlpatterns
from fleet.models import Alert
from jobs.models import Repository, create_build

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast_hashing")]

PEOPLE = ["anonymous", "outsider", "read", "operate", "org admin", "staff"]
TOKENS = ["worker in", "worker out", "build in", "build out", "personal in", "personal out", "legacy"]
CALLERS = PEOPLE + TOKENS
READERS = {"read", "operate", "org admin", "staff"}  # people who read acme's private repository
OPERATORS = {"operate", "org admin"}
OK = "ok"  # any answer but a denial: 2xx, 3xx other than to the login page, 400, 409


def _walk(patterns, prefix="", namespace=""):
    for p in patterns:
        if isinstance(p, URLResolver):
            yield from _walk(p.url_patterns, prefix + str(p.pattern), p.namespace or namespace)
        elif isinstance(p, URLPattern):
            yield (f"{namespace}:" if namespace else "") + str(p.name), prefix + str(p.pattern)


def url_patterns() -> list[tuple[str, str]]:
    return list(_walk(get_resolver().url_patterns))


# --- expectations: caller, visibility ("public"/"private") -> status, OK, or "login" ------------------------

def _person_reads(caller, vis):
    return vis == "public" or caller in READERS


def page_read(caller, vis):
    """Pages see people by their session; a token sent to a page counts for nothing (anonymous)."""
    return 200 if _person_reads(caller, vis) else 404


def page_operate(caller, vis):
    if not _person_reads(caller, vis):
        return 404
    return OK if caller in OPERATORS else 403


def page_repo_admin(caller, vis):
    if not _person_reads(caller, vis):
        return 404
    return 200 if caller == "org admin" else 403


def _token_reads(caller, vis):
    return vis == "public" or caller in ("legacy", "personal in", "build in")


def api_read(caller, vis):
    """The read API takes a session or a token."""
    if caller in PEOPLE:
        return 200 if _person_reads(caller, vis) else 404
    return 200 if _token_reads(caller, vis) else 404


def _reports(caller):
    return caller in ("legacy", "worker in", "build in")


def api_job_progress(caller, vis):
    """A job's state and log progress: its readers, and the tokens that report for it (a worker resending
    what persisted_through has not reached), but not its log."""
    if caller not in PEOPLE and _reports(caller):
        return 200
    return api_read(caller, vis)


def api_report(caller, vis):
    if caller in PEOPLE:
        return 401
    return OK if _reports(caller) else 404


def api_operate(caller, vis):
    if caller in PEOPLE:
        return 401
    if not (_token_reads(caller, vis) or _reports(caller)):
        return 404
    return OK if caller in ("legacy", "personal in") else 403


def api_create_build(caller, vis):
    if caller in PEOPLE:
        return 401
    return 201 if caller in ("legacy", "build in") else 403


def api_heartbeat(caller, vis):
    if caller in PEOPLE:
        return 401
    return 200 if caller in ("legacy", "worker in") else 403


def api_fleet_operate(caller, vis):
    """Rollouts: a staff user's personal token only (no caller here holds one: tests/test_rollouts.py does);
    the permission is decided before the rollout is looked up."""
    return 401 if caller in PEOPLE else 403


def api_fleet_read(caller, vis):
    """A queue's current rollout: also for staff signed in (none exists here: 404)."""
    if caller == "anonymous":
        return 401
    if caller == "staff":
        return 404
    return 403


def everyone(status):
    return lambda caller, vis: status


def signed_in(status_for_people):
    """Account pages: anonymous (and token) callers go to the login page."""
    return lambda caller, vis: "login" if caller not in PEOPLE[1:] else status_for_people(caller)


def staff_only(caller, vis):
    if caller not in PEOPLE[1:]:
        return "login"
    return OK if caller == "staff" else 403


def staff_gate_first(caller, vis):
    """Staff-only pages about an object that does not exist: the gate answers before the lookup."""
    return 404 if caller == "staff" else staff_only(caller, vis)


def org_admin_page(caller, vis):
    if caller not in PEOPLE[1:]:
        return "login"
    if caller == "org admin":
        return OK
    return 403 if caller in ("read", "operate", "staff") else 404


def token_revoke(caller, vis):
    if caller not in PEOPLE[1:]:
        return "login"
    return OK if caller == "org admin" else 404


# --- the matrix: route name -> [(method, path builder, expectation)] ---------------------------------------

def job(w, vis):
    return w["jobs"][vis]


ROUTES = {
    "login": [("get", lambda w, v: "/login/", everyone(200))],
    "logout": [("post", lambda w, v: "/logout/", everyone(OK))],
    "orgs": [("get", lambda w, v: "/orgs/", signed_in(lambda c: 200))],
    "orgs-create": [("post", lambda w, v: "/orgs/new", staff_only)],
    "orgs-detail": [("get", lambda w, v: "/orgs/acme/", org_admin_page)],
    "orgs-grant": [("post", lambda w, v: "/orgs/acme/grant", org_admin_page)],
    "orgs-revoke": [("post", lambda w, v: "/orgs/acme/revoke", lambda c, v: "login" if c not in PEOPLE[1:] else 404)],
    "orgs-member-remove": [("post", lambda w, v: "/orgs/acme/members/remove", org_admin_page)],
    "orgs-team-create": [("post", lambda w, v: "/orgs/acme/teams", org_admin_page)],
    "orgs-team": [("get", lambda w, v: "/orgs/acme/teams/devs/", org_admin_page)],
    "orgs-token-create": [("post", lambda w, v: "/orgs/acme/tokens", org_admin_page)],
    "orgs-audit": [("get", lambda w, v: "/orgs/acme/audit/", org_admin_page)],
    "tokens": [("get", lambda w, v: "/tokens/", signed_in(lambda c: 200))],
    "tokens-worker-create": [("post", lambda w, v: "/tokens/worker", staff_only)],
    "tokens-revoke": [("post", lambda w, v: f"/tokens/{w['victim']}/revoke", token_revoke)],
    "audit": [("get", lambda w, v: "/audit/", staff_only)],
    "jobs-home": [("get", lambda w, v: "/", everyone(200))],
    "jobs-build": [("get", lambda w, v: f"/builds/{job(w, v).build_id}/", page_read)],
    "jobs-build-row": [("get", lambda w, v: f"/builds/{job(w, v).build_id}/row", page_read)],
    "jobs-detail": [("get", lambda w, v: f"/jobs/{job(w, v).pk}/", page_read)],
    "jobs-log-txt": [("get", lambda w, v: f"/jobs/{job(w, v).pk}/log.txt", api_read)],
    "jobs-cancel": [("post", lambda w, v: f"/jobs/{job(w, v).pk}/cancel", page_operate)],
    "jobs-restart": [("post", lambda w, v: f"/jobs/{job(w, v).pk}/restart", page_operate)],
    "jobs-build-action": [("post", lambda w, v: f"/builds/{job(w, v).build_id}/action", page_operate)],
    "jobs-badge": [("get", lambda w, v: f"/acme/{w['repos'][v]}.svg", page_read)],
    "jobs-repository": [("get", lambda w, v: f"/acme/{w['repos'][v]}/", page_read)],
    "jobs-repository-settings": [("get", lambda w, v: f"/acme/{w['repos'][v]}/settings", page_repo_admin)],
    "api-openapi": [("get", lambda w, v: "/api/v1/openapi.json", everyone(200))],
    "api-builds-create": [("post", lambda w, v: "/api/v1/builds", api_create_build)],
    "api-job-detail": [("get", lambda w, v: f"/api/v1/jobs/{job(w, v).pk}", api_job_progress)],
    "api-job-state": [("post", lambda w, v: f"/api/v1/jobs/{job(w, v).pk}/state", api_report)],
    "api-job-log": [("get", lambda w, v: f"/api/v1/jobs/{job(w, v).pk}/log", api_read),
                    ("post", lambda w, v: f"/api/v1/jobs/{job(w, v).pk}/log", api_report)],
    "api-job-restart": [("post", lambda w, v: f"/api/v1/jobs/{job(w, v).pk}/restart", api_operate)],
    "api-job-cancel": [("post", lambda w, v: f"/api/v1/jobs/{job(w, v).pk}/cancel", api_operate)],
    "api-worker-heartbeat": [("post", lambda w, v: "/api/v1/workers/w-1/heartbeat", api_heartbeat)],
    "api-rollouts": [("post", lambda w, v: "/api/v1/queues/builds.linux/rollouts", api_fleet_operate)],
    "api-rollouts-current": [("get", lambda w, v: "/api/v1/queues/builds.linux/rollouts/current", api_fleet_read)],
    **{f"api-rollout-{action}": [("post", lambda w, v, a=action: f"/api/v1/queues/builds.linux/rollouts/1/{a}",
                                  api_fleet_operate)] for action in ("pause", "resume", "promote", "abort")},
    "rollouts-detail": [("get", lambda w, v: "/fleet/rollouts/999999/", staff_gate_first)],
    "fleet-rollout-start": [("post", lambda w, v: "/fleet/rollouts/start", staff_only)],
    "fleet-rollout-action": [("post", lambda w, v: "/fleet/rollouts/999999/pause", staff_gate_first)],
    "fleet": [("get", lambda w, v: "/fleet/", staff_only)],
    "fleet-live": [("get", lambda w, v: "/fleet/live", staff_only)],
    "fleet-queue": [("post", lambda w, v: "/fleet/queue", staff_only)],
    "fleet-worker-drain": [("post", lambda w, v: "/fleet/worker-drain", staff_gate_first)],
    "alerts": [("get", lambda w, v: "/alerts/", staff_only)],
    "alerts-rules": [("get", lambda w, v: "/alerts/rules/", staff_only),
                     ("post", lambda w, v: "/alerts/rules/", staff_only)],
    "alerts-detail": [("get", lambda w, v: f"/alerts/{w['alert']}/", staff_only)],
    "alerts-acknowledge": [("post", lambda w, v: f"/alerts/{w['alert']}/acknowledge", staff_only)],
    "alerts-incident": [("post", lambda w, v: f"/alerts/{w['alert']}/incident", staff_only)],
}
# The status page: public pages for everyone (unknown codes are 404 to all alike), the rest for its managers.
PUBLIC_STATUS = {
    "incidents-status": "/status/", "incidents-seq": "/status/seq.json", "incidents-history": "/status/history/",
    "incidents-feed-atom": "/status/history.atom", "incidents-feed-rss": "/status/history.rss",
    "incidents-subscribe": "/status/subscribe/",
    "statusapi-summary": "/api/v2/summary.json", "statusapi-status": "/api/v2/status.json",
    "statusapi-components": "/api/v2/components.json", "statusapi-incidents": "/api/v2/incidents.json",
    "statusapi-incidents-unresolved": "/api/v2/incidents/unresolved.json",
    "statusapi-maintenances": "/api/v2/scheduled-maintenances.json",
    "statusapi-maintenances-upcoming": "/api/v2/scheduled-maintenances/upcoming.json",
    "statusapi-maintenances-active": "/api/v2/scheduled-maintenances/active.json",
}
for _name, _path in PUBLIC_STATUS.items():
    ROUTES[_name] = [("get", lambda w, v, p=_path: p, everyone(200))]
for _name, _path, _status in [("incidents-incident", "/status/incidents/nope/", 404),
                              ("incidents-maintenance", "/status/maintenance/nope/", 404),
                              ("incidents-confirm", "/status/subscribe/confirm/nope/", 400),  # a bad signature
                              ("incidents-unsubscribe", "/status/unsubscribe/nope/", 400),
                              ("incidents-manage-subscription", "/status/subscribe/manage/nope/", 400)]:
    ROUTES[_name] = [("get", lambda w, v, p=_path: p, everyone(_status))]  # the same to all callers
# Anyone may ask for a webhook subscription; an empty form is a 400 to all alike.
ROUTES["incidents-subscribe-url"] = [("post", lambda w, v: "/status/subscribe/webhook/", everyone(400))]
MANAGE = {
    "incidents-manage": "", "incidents-manage-incident-new": "incidents/new/",
    "incidents-manage-incident": "incidents/nope/", "incidents-manage-postmortem": "incidents/nope/postmortem/",
    "incidents-manage-maintenance-new": "maintenance/new/", "incidents-manage-maintenance": "maintenance/nope/",
    "incidents-manage-component-new": "components/new/", "incidents-manage-component": "components/nope/",
    "incidents-manage-component-status": "components/nope/status/", "incidents-manage-group-new": "groups/new/",
    "incidents-manage-group": "groups/nope/", "incidents-manage-template-new": "templates/new/",
    "incidents-manage-template": "templates/999999/", "incidents-manage-webhook-new": "webhooks/new/",
    "incidents-manage-webhook-delete": "webhooks/nope/delete/",
}
for _name, _tail in MANAGE.items():
    ROUTES[_name] = [("post" if _tail.endswith(("status/", "delete/")) else "get",
                      lambda w, v, t=_tail: f"/status/manage/{t}",
                      staff_gate_first if "nope" in _tail or "999999" in _tail else staff_only)]

ROUTES["logout"] = ROUTES.pop("logout")  # last: it ends the callers' sessions

# Routes whose answer does not depend on a repository are asked once, not once per visibility.
ONCE = {name for name, cells in ROUTES.items() if not name.startswith(("jobs-", "api-job"))} - {"jobs-home"}


def ws_job(caller, vis):
    return "accept" if _person_reads(caller, vis) else 4404


WEBSOCKETS = {
    "ws/jobs/<int:job_id>/": (lambda w, v: f"/ws/jobs/{job(w, v).pk}/", ws_job),
    "ws/builds/<int:build_id>/": (lambda w, v: f"/ws/builds/{job(w, v).build_id}/", ws_job),
    "ws/builds/": (lambda w, v: "/ws/builds/", lambda c, v: "accept"),
    "ws/fleet/": (lambda w, v: "/ws/fleet/", lambda c, v: "accept" if c == "staff" else 4403),
    "ws/status/": (lambda w, v: "/ws/status/", lambda c, v: "accept"),
}


# --- the world and the callers ------------------------------------------------------------------------------

@pytest.fixture
def world(alice, bob, carol, dave, erin, django_user_model):
    Organization.objects.get_or_create(name="octo")
    acme = Organization.objects.get(name="acme")
    Repository.objects.create(owner="acme", name="secret", private=True)
    jobs = {"public": create_build(repository="acme/rocket", branch="main", commit="a", jobs=[{}]).jobs.get(),
            "private": create_build(repository="acme/secret", branch="main", commit="a", jobs=[{}]).jobs.get()}
    acme.teams.create(name="devs")
    Membership.objects.get_or_create(organization=acme, user=bob)  # so that member removal has someone...
    Membership.objects.filter(organization=acme, user=bob).delete()  # ...but bob stays an outsider
    tokens = {
        "worker in": ApiToken.mint(name="wi", kind="worker", queues=["builds.linux"])[1],
        "worker out": ApiToken.mint(name="wo", kind="worker", queues=["builds.mac"])[1],
        "build in": ApiToken.mint(name="bi", kind="build", organizations=["acme"])[1],
        "build out": ApiToken.mint(name="bo", kind="build", organizations=["octo"])[1],
        "personal in": ApiToken.mint(name="pi", kind="personal", user=dave)[1],
        "personal out": ApiToken.mint(name="po", kind="personal", user=bob)[1],
        "legacy": ApiToken.mint(name="lg", kind="legacy")[1],
    }
    victim = ApiToken.mint(name="victim", kind="build", repositories=["acme/rocket"])[0]
    alert = Alert.objects.create(rule="capacity_low", subject="builds.linux", title="Capacity low")
    users = {"outsider": bob, "read": carol, "operate": dave, "org admin": erin, "staff": alice}
    clients = {}
    for caller in CALLERS:
        c = Client()
        if caller in users:
            c.force_login(users[caller])
        clients[caller] = c
    return {"jobs": jobs, "repos": {"public": "rocket", "private": "secret"}, "tokens": tokens, "users": users,
            "clients": clients, "victim": victim.pk, "alert": alert.pk}


BODIES = {
    "/api/v1/builds": lambda v: {"repository": f"acme/{'rocket' if v == 'public' else 'secret'}", "branch": "m",
                                 "commit": "c", "jobs": [{}]},
    "heartbeat": lambda v: {"version": "v1", "queue": "builds.linux", "pool_size": 1, "busy": 0,
                            "state": "in_service"},
    "state": lambda v: {"state": "received"},
    "log": lambda v: {"parts": [{"number": 0, "content": "x"}]},
}


def _body(path: str, vis: str) -> dict:
    for key, make in BODIES.items():
        if path.endswith(key) or path == key:
            return make(vis)
    return {}


def _request(world, caller, method, path, vis):
    client = world["clients"][caller]
    headers = {"Authorization": f"Bearer {world['tokens'][caller]}"} if caller in TOKENS else {}
    if method == "get":
        return client.get(path, headers=headers)
    if path.startswith("/api/"):
        return client.post(path, json.dumps(_body(path, vis)), content_type="application/json", headers=headers)
    return client.post(path, {}, headers=headers)


def _matches(response, expected) -> bool:
    status = response.status_code
    if expected == "login":
        return status == 302 and "/login/" in response["Location"]
    if expected == OK:
        return status < 500 and status not in (401, 403, 404) and not (
            status == 302 and "/login/" in response.get("Location", ""))
    return status == expected


# --- the tests ----------------------------------------------------------------------------------------------

def test_every_route_has_a_matrix_entry():
    names = {name for name, _ in url_patterns() if not name.startswith("admin:")}
    assert names - set(ROUTES) == set(), "routes without a permission matrix entry"
    assert set(ROUTES) - names == set(), "matrix entries for routes that no longer exist"
    ws_routes = {str(p.pattern) for p in websocket_urlpatterns}
    assert ws_routes == set(WEBSOCKETS), "websocket routes and the matrix differ"


def test_permission_matrix(world, capsys, settings):
    # Every caller posts from the test client's one address; the subscribe forms' per-address limit has
    # tests of its own (test_incidents_subscribers.py).
    settings.SUBSCRIBE_RATE = "100000/h"
    started = time.monotonic()
    failures, cells = [], 0
    for name, entries in ROUTES.items():
        for method, path_of, expect in entries:
            for vis in (["public"] if name in ONCE else ["public", "private"]):
                path = path_of(world, vis)
                for caller in CALLERS:
                    expected = expect(caller, vis)
                    response = _request(world, caller, method, path, vis)
                    cells += 1
                    if not _matches(response, expected):
                        failures.append(f"{method.upper()} {path} [{vis}] as {caller}: "
                                        f"expected {expected}, got {response.status_code}")
    assert failures == [], "\n".join(failures)
    with capsys.disabled():
        print(f"\npermission matrix: {len(ROUTES)} routes ({sum(len(e) for e in ROUTES.values())} route-methods) x "
              f"{len(CALLERS)} callers x public/private = {cells} HTTP cells in {time.monotonic() - started:.1f} s")


def test_admin_site_is_staff_only_on_every_admin_route(world):
    """The admin has its own gate (is_staff); every one of its patterns sends everyone else to its login."""
    admin_routes = [(n, r) for n, r in url_patterns()
                    if n.startswith("admin:") and n not in ("admin:login", "admin:logout")]
    assert len(admin_routes) > 20
    failures = []
    for name, route in admin_routes:
        path = "/" + _fill(route)
        for caller in ("anonymous", "org admin", "legacy"):
            response = _request(world, caller, "get", path, "public")
            if not (response.status_code == 302 and "/admin/login/" in response["Location"]) and \
                    response.status_code != 404:  # admin's catch-all answers unknown paths with 404 first
                failures.append(f"{name} {path} as {caller}: {response.status_code}")
        staff = _request(world, "staff", "get", path, "public")
        if staff.status_code == 302 and "/admin/login/" in staff["Location"]:
            failures.append(f"{name} {path}: staff sent to log in")
    assert failures == [], "\n".join(failures)
    assert admin.site.has_permission(type("R", (), {"user": world["users"]["staff"]})())


def _fill(route: str) -> str:
    for converter, value in (("<path:object_id>", "1"), ("<app_label>", "jobs"), ("<str:", ""),
                             ("<int:", ""), ("<path:", ""), ("<", "")):
        while converter in route:
            start = route.index(converter)
            end = route.index(">", start)
            route = route[:start] + (value or "1") + route[end + 1:]
    return route.replace("^", "").replace("$", "")


def test_websocket_matrix(world, capsys):
    started = time.monotonic()
    failures, cells = [], 0
    for path_of, expect in WEBSOCKETS.values():
        for vis in ("public", "private"):
            path = path_of(world, vis)
            for caller in CALLERS:
                expected = expect(caller, vis)
                got = async_to_sync(_connect)(path, world["users"].get(caller))
                cells += 1
                if got != expected:
                    failures.append(f"{path} [{vis}] as {caller}: expected {expected}, got {got}")
    assert failures == [], "\n".join(failures)
    with capsys.disabled():
        print(f"\nwebsocket matrix: {len(WEBSOCKETS)} routes x {len(CALLERS)} callers x public/private = "
              f"{cells} cells in {time.monotonic() - started:.1f} s")


async def _connect(path: str, user):
    """Connect through the project's websocket router (channels.testing needs daphne): accepted or the close code."""
    socket = ApplicationCommunicator(URLRouter(websocket_urlpatterns), {
        "type": "websocket", "path": path, "query_string": b"", "headers": [], "subprotocols": [],
        "user": user or AnonymousUser()})
    await socket.send_input({"type": "websocket.connect"})
    reply = await socket.receive_output(5)
    await socket.send_input({"type": "websocket.disconnect", "code": 1000})
    await socket.wait(5)
    return "accept" if reply["type"] == "websocket.accept" else reply.get("code")


@pytest.fixture(autouse=True)
def fresh_channel_layer():
    yield
    channel_layers.backends.clear()


def test_a_personal_tokens_reach_follows_its_users_grants(world, client):
    """The same token, before and after its user's role is taken back: the matrix's cells are not fixed."""
    secret, private = world["tokens"]["personal in"], world["jobs"]["private"]
    headers = {"Authorization": f"Bearer {secret}"}
    assert client.get(f"/api/v1/jobs/{private.pk}", headers=headers).status_code == 200
    Grant.objects.filter(user=world["users"]["operate"]).delete()
    assert client.get(f"/api/v1/jobs/{private.pk}", headers=headers).status_code == 404
