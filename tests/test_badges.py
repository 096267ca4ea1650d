"""Status badges: one word per build state, cache headers, and private repositories hidden."""

import pytest

from jobs import tasks
from jobs.models import Build, Repository

pytestmark = pytest.mark.django_db

AT = "2026-11-26T10:00:00+00:00"


@pytest.mark.parametrize(("state", "word"), [
    ("passed", "passing"), ("failed", "failing"), ("errored", "error"), ("canceled", "canceled"),
    ("running", "pending"), ("created", "pending"),
])
def test_badge_says_the_latest_builds_state(client, make_build, state, word):
    build = make_build()
    Build.objects.filter(pk=build.pk).update(state=state)
    response = client.get("/acme/rocket.svg")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("image/svg+xml")
    svg = response.content.decode()
    assert svg.startswith("<svg") and f">{word}</text>" in svg and f'aria-label="build: {word}"' in svg


def test_badge_without_builds_is_unknown(client, make_build):
    Repository.objects.create(owner="acme", name="empty")
    assert ">unknown</text>" in client.get("/acme/empty.svg").content.decode()


def test_badge_follows_the_branch_parameter(client, make_build):
    main = make_build(branch="main").jobs.get()
    make_build(branch="dev")
    tasks.apply_job_state(main.pk, 1, "passed", AT, exit_code=0)
    assert ">passing</text>" in client.get("/acme/rocket.svg?branch=main").content.decode()
    assert ">pending</text>" in client.get("/acme/rocket.svg?branch=dev").content.decode()
    assert ">pending</text>" in client.get("/acme/rocket.svg").content.decode()  # the newest of any branch
    assert ">unknown</text>" in client.get("/acme/rocket.svg?branch=nope").content.decode()


def test_badge_is_cacheable_briefly_and_revalidates_with_etag(client, make_build):
    make_build()
    response = client.get("/acme/rocket.svg")
    assert response["Cache-Control"] == "public, max-age=60"
    again = client.get("/acme/rocket.svg", headers={"If-None-Match": response["ETag"]})
    assert again.status_code == 304


def test_badge_of_private_repository_is_404_to_anonymous_and_uncached_for_staff(client, make_build, alice):
    build = make_build(repository="acme/secret")
    Repository.objects.filter(pk=build.repository_id).update(private=True)
    assert client.get("/acme/secret.svg").status_code == 404
    assert client.get("/acme/nothing.svg").status_code == 404
    client.force_login(alice)
    response = client.get("/acme/secret.svg")
    assert response.status_code == 200 and response["Cache-Control"] == "private, no-store"
