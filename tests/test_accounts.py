"""Sign-in lockout, the management commands, and the org admin pages: who may change roles and tokens."""

import json
from datetime import timedelta
from io import StringIO

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.utils import timezone

from accounts import permissions, tokens
from accounts.models import ApiToken, AuditEntry, Grant, Organization, Team
from devtools.simulator import REPOSITORIES, Fleet
from jobs.models import Repository

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_hashing")]


def login(client, username, password):
    return client.post("/login/", {"username": username, "password": password}, REMOTE_ADDR="10.1.1.1")


def test_repeated_failures_lock_the_account_and_the_lock_lifts_later(client, bob, settings):
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        for _ in range(settings.AXES_FAILURE_LIMIT - 1):
            assert login(client, "bob", "wrong").status_code == 200  # the form again, with its error
        assert login(client, "bob", "wrong").status_code == 429  # the last allowed failure locks
        locked = login(client, "bob", "bob-password")
        assert locked.status_code == 429 and b"Too many failed sign-ins" in locked.content
        clock.shift(timedelta(hours=settings.AXES_COOLOFF_TIME) - timedelta(minutes=1))
        assert login(client, "bob", "bob-password").status_code == 429
        clock.shift(timedelta(minutes=2))
        assert login(client, "bob", "bob-password").status_code == 302


def test_failures_from_one_address_lock_it_for_every_account(client, bob, carol, settings):
    for i in range(settings.AXES_FAILURE_LIMIT):
        login(client, f"nobody{i}", "guess")
    assert login(client, "carol", "carol-password").status_code == 429
    other = client.post("/login/", {"username": "carol", "password": "carol-password"}, REMOTE_ADDR="10.2.2.2")
    assert other.status_code == 302


def test_grant_and_revoke_commands(carol, erin):
    call_command("grant", "carol", "acme/rocket", "operate", stdout=StringIO())
    assert Grant.objects.get(user=carol, repository="rocket").role == "operate"
    call_command("revoke", "carol", "acme/rocket", stdout=StringIO())
    assert not Grant.objects.filter(user=carol, repository="rocket").exists()
    assert AuditEntry.objects.filter(action__in=["grant", "revoke"]).count() == 2


@pytest.mark.parametrize("args, message", [
    (["carol", "acme", "owner"], "unknown role 'owner'"),
    (["nobody", "acme", "read"], "unknown user 'nobody'"),
    (["carol", "nowhere", "read"], "unknown organization 'nowhere'"),
    (["carol", "a/b/c", "read"], "is not an organization"),
])
def test_grant_refuses_bad_input_and_changes_nothing(carol, args, message):
    before = list(Grant.objects.values_list("pk", "role"))
    with pytest.raises(CommandError, match=message):
        call_command("grant", *args, stdout=StringIO())
    assert list(Grant.objects.values_list("pk", "role")) == before


def test_revoking_the_last_admin_is_refused_with_a_message(erin):
    with pytest.raises(CommandError, match="would have no admin left"):
        call_command("revoke", "erin", "acme", stdout=StringIO())
    assert Grant.objects.filter(user=erin, role="admin").exists()


def test_create_token_kinds_and_bad_input(acme, carol):
    out = StringIO()
    call_command("create_token", "w1", "--queue", "builds.linux", stdout=out)
    assert out.getvalue().strip().startswith("bb_") and ApiToken.objects.get(name="w1").kind == "worker"
    call_command("create_token", "b1", "--organization", "acme", stdout=StringIO())
    call_command("create_token", "b2", "--repository", "acme/rocket", stdout=StringIO())
    call_command("create_token", "p1", "--user", "carol", "--expires-days", "30", stdout=StringIO())
    assert ApiToken.objects.get(name="p1").user == carol and ApiToken.objects.get(name="p1").expires_at
    for args, message in [(["x", "--queue", "nope"], "unknown queue 'nope'"),
                          (["x", "--organization", "nowhere"], "unknown organization 'nowhere'"),
                          (["x", "--user", "nobody"], "unknown user 'nobody'"),
                          (["x", "--queue", "builds.linux", "--user", "carol"], "exactly one kind"),
                          (["x"], "exactly one kind")]:
        with pytest.raises(CommandError, match=message):
            call_command("create_token", *args, stdout=StringIO())
    assert not ApiToken.objects.filter(name="x").exists()


def test_revoke_token_command(db):
    token, secret = ApiToken.mint(name="old", kind="legacy")
    assert tokens.authenticate(secret) is not None
    call_command("revoke_token", "old", stdout=StringIO())
    assert tokens.authenticate(secret) is None
    with pytest.raises(CommandError, match="unknown token"):
        call_command("revoke_token", "missing", stdout=StringIO())


def test_createuser_makes_the_first_admin_of_a_new_organization(db):
    out = StringIO()
    call_command("createuser", "founder", "--admin-of", "newco", stdout=out)
    org = Organization.objects.get(name="newco")
    assert [u.username for u in org.admins()] == ["founder"]
    assert out.getvalue().strip()  # the generated password


def test_org_admin_grants_a_repository_role_in_the_ui(client, erin, bob):
    client.force_login(erin)
    response = client.post("/orgs/acme/grant", {"username": "bob", "repository": "rocket", "role": "read"})
    assert response.status_code == 302
    assert Grant.objects.get(user=bob, repository="rocket").role == "read"


def test_a_repository_admin_cannot_grant_themselves_above_their_role(client, carol):
    Grant.objects.create(organization=carol.organizations.get(), user=carol, repository="rocket", role="admin")
    client.force_login(carol)
    response = client.post("/orgs/acme/grant", {"username": "carol", "repository": "", "role": "admin"})
    assert response.status_code == 403
    response = client.post("/orgs/acme/grant", {"username": "carol", "repository": "rocket", "role": "read"})
    assert response.status_code == 302  # lowering oneself is fine


def test_ui_refuses_unknown_names_and_the_last_admin_removal(client, erin):
    client.force_login(erin)
    unknown = client.post("/orgs/acme/grant", {"username": "ghost", "role": "read"})
    assert unknown.status_code == 404 and b"unknown user" in unknown.content
    bad_role = client.post("/orgs/acme/grant", {"username": "erin", "role": "owner"})
    assert bad_role.status_code == 400
    last = client.post("/orgs/acme/members/remove", {"username": "erin"})
    assert last.status_code == 409 and b"no admin left" in last.content
    assert Grant.objects.filter(user=erin, role="admin").exists()


def test_non_admins_cannot_manage_an_organization(client, carol, bob, alice):
    client.force_login(carol)  # a member: sees it exists
    assert client.get("/orgs/acme/").status_code == 403
    client.force_login(alice)  # staff: no implicit role
    assert client.get("/orgs/acme/").status_code == 403
    client.force_login(bob)  # an outsider: nothing there
    assert client.get("/orgs/acme/").status_code == 404
    assert client.post("/orgs/acme/grant", {"username": "bob", "role": "admin"}).status_code == 404


def test_team_roles_reach_their_members(client, erin, bob, make_build):
    build = make_build(repository="acme/secret")
    build.repository.private = True
    build.repository.save()
    client.force_login(erin)
    client.post("/orgs/acme/teams", {"name": "devs"})
    client.post("/orgs/acme/teams/devs/", {"username": "bob", "action": "add"})
    client.post("/orgs/acme/grant", {"team": "devs", "repository": "secret", "role": "read"})
    assert Team.objects.get(name="devs").members.filter(pk=bob.pk).exists()
    client.force_login(bob)
    assert client.get(f"/builds/{build.pk}/").status_code == 200


def test_admins_create_and_revoke_build_tokens_and_see_the_audit(client, erin):
    client.force_login(erin)
    created = client.post("/orgs/acme/tokens", {"name": "ci", "repositories": "rocket", "expires": "30"})
    assert created.status_code == 200 and created["Cache-Control"] == "no-store"
    token = ApiToken.objects.get(name="ci")
    assert token.repositories == ["acme/rocket"] and token.created_by == erin and token.expires_at
    assert client.post(f"/tokens/{token.pk}/revoke").status_code == 302
    token.refresh_from_db()
    assert token.revoked
    audit = client.get("/orgs/acme/audit/").content.decode()
    assert "token.create" in audit and "token.revoke" in audit


def test_only_staff_mint_worker_tokens(client, erin, alice):
    client.force_login(erin)
    assert client.post("/tokens/worker", {"name": "w", "queues": "builds.linux"}).status_code == 403
    client.force_login(alice)
    assert client.post("/tokens/worker", {"name": "w", "queues": "builds.linux"}).status_code == 200
    assert client.post("/tokens/worker", {"name": "w2", "queues": "nope"}).status_code == 400


def test_members_personal_tokens_are_revocable_by_their_org_admin_only(client, erin, carol, bob):
    token, _ = ApiToken.mint(name="carols", kind="personal", user=carol)
    client.force_login(bob)
    assert client.post(f"/tokens/{token.pk}/revoke").status_code == 404
    client.force_login(erin)
    assert client.post(f"/tokens/{token.pk}/revoke").status_code == 302


def test_demo_accounts_give_the_demo_fleet_the_tokens_it_needs_and_run_twice(django_user_model):
    for _ in range(2):  # ./bb run calls it on every start
        out = StringIO()
        call_command("demo_accounts", "--password", "demo-password", stdout=out)
    demo = json.loads(out.getvalue())
    build, worker = tokens.authenticate(demo["build_token"]), tokens.authenticate(demo["worker_token"])
    for slug in REPOSITORIES:  # every repository the simulated fleet builds
        assert permissions.token_may_create_build(build, *slug.split("/")), slug
    for simulated in Fleet("http://127.0.0.1:1", demo["worker_token"]).workers:
        assert permissions.token_may_heartbeat(worker, simulated.queue)
        assert permissions.token_may_report(worker, queue=simulated.queue, owner="", name="")
    assert not permissions.token_may_create_build(worker, "acme", "rocket")
    private = Repository.objects.get(owner="acme", name="widgets")
    developer = django_user_model.objects.get(username=demo["developer"])
    assert private.private and not developer.is_staff
    assert permissions.can_operate(developer, private) and developer.check_password("demo-password")
