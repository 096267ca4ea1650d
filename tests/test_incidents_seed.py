"""The seed incident (Travis CI, February 2017), entered by staff through the incident manager forms,
reads on the public incident page as it did on Travis CI's: postmortem first, then the updates newest
first with their UTC times.

The report in tests/fixtures is the project's own retelling of that postmortem: the same title, section
headings, lists and updates with their dates and times, laid out as a plain-text copy of a status page."""

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from incidents.models import Component, Incident

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """alice and bob log in with force_login here; PBKDF2's million rounds only slow the suite."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


SEED = Path(__file__).parent / "fixtures" / "incident-2017-02-container-maintenance.txt"
POSTED = re.compile(r"^Posted .*\. (\w{3} \d{2}, \d{4}) - (\d{2}:\d{2}) UTC$")
MONTHS = {m: i for i, m in enumerate(["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
                                      "Dec"], start=1)}


@dataclass
class Seed:
    title: str
    postmortem: str  # as markdown
    headings: list[str]
    bullets: list[str]
    numbered: list[str]
    updates: list[dict]  # oldest first: status, body, display_at (form value), shown (page text)


def _when(date_text: str, hm: str) -> tuple[str, str]:
    month, day, year = date_text.replace(",", "").split()
    return f"{year}-{MONTHS[month]:02d}-{day}T{hm}", f"{date_text} - {hm} UTC"


def _is_heading(line: str, following: str) -> bool:
    # In the plain-text copy, headings are short lines standing alone, without a closing full stop.
    return bool(line) and len(line) < 40 and not line.endswith((".", ":")) and not following.startswith("  ")


def load_seed() -> Seed:
    lines = SEED.read_text(encoding="utf-8").splitlines()
    title = lines[0].strip()
    body_start = lines.index("Incident Report for Travis CI") + 1
    pm_end = next(i for i, line in enumerate(lines) if POSTED.match(line.strip()))
    markdown, headings, bullets, numbered = [], [], [], []
    for i in range(body_start, pm_end):
        line = lines[i].rstrip()
        following = lines[i + 1] if i + 1 < len(lines) else ""
        stripped = line.strip()
        if stripped.startswith("•"):
            item = stripped.lstrip("• ").strip()
            bullets.append(item)
            markdown.append(f"- {item}")
        elif re.match(r"^\s+\d+\.\s", line):
            number, item = stripped.split(".", 1)
            numbered.append(item.strip())
            markdown.append(f"{number}. {item.strip()}")
        elif _is_heading(stripped, following) and (i == body_start or not lines[i - 1].strip()):
            headings.append(stripped)
            markdown.append(f"## {stripped}")
        else:
            markdown.append(stripped)
    updates = []
    rest = [line.strip() for line in lines[pm_end + 1:] if line.strip()]
    for i in range(0, len(rest), 3):
        status, body, posted = rest[i:i + 3]
        value, shown = _when(*POSTED.match(posted).groups())
        updates.append({"status": status.lower(), "body": body, "display_at": value, "shown": shown})
    updates.reverse()
    return Seed(title, "\n".join(markdown), headings, bullets, numbered, updates)


def test_seed_file_parses_into_the_incident_it_shows():
    seed = load_seed()
    assert seed.title.startswith("Container-based Linux Precise infrastructure")
    assert seed.headings == ["Some background information", "So what happened?", "Contributing Factors",
                             "Going forward?", "Summary"]
    assert len(seed.bullets) == 8 and len(seed.numbered) == 4
    assert [u["status"] for u in seed.updates] == ["identified", "monitoring", "resolved"]
    assert [u["display_at"] for u in seed.updates] == ["2017-02-05T21:56", "2017-02-06T00:16", "2017-02-06T00:31"]


def test_seed_incident_entered_through_staff_ui_reads_right_on_public_page(client, alice):
    seed = load_seed()
    Component.objects.create(name="Linux container builds", queues="builds.linux")
    container = Component.objects.get()
    client.force_login(alice)
    first, second, third = seed.updates

    response = client.post("/status/manage/incidents/new/", {
        "name": seed.title, "status": first["status"], "impact": "major", "message": first["body"],
        "display_at": first["display_at"], f"component-{container.code}": "partial_outage", "notify": "",
    })
    assert response.status_code == 302, response.content.decode()[:2000]
    incident = Incident.objects.get()
    manage_url = response["Location"]
    for update, component_status in ((second, ""), (third, "operational")):
        response = client.post(manage_url, {"status": update["status"], "message": update["body"],
                                            "display_at": update["display_at"],
                                            f"component-{container.code}": component_status})
        assert response.status_code == 302, response.content.decode()[:2000]
    response = client.post(f"/status/manage/incidents/{incident.code}/postmortem/",
                           {"body": seed.postmortem, "action": "publish"})
    assert response.status_code == 302

    client.logout()
    page = client.get(incident.get_absolute_url())
    assert page.status_code == 200
    html = page.content.decode()

    assert f"<h1>{seed.title}</h1>" in html
    for heading in seed.headings:
        assert f"<h2>{heading}</h2>" in html
    assert html.count("<ul>") == 2 and html.count("<ol>") == 1  # two bullet lists, one numbered
    for item in seed.bullets[:2] + seed.numbered[:1]:
        assert f"<li>{item}</li>" in html
    assert "wasn't on Docker Hub -- only on quay.io" in html  # the text as written, no typographic rewriting

    postmortem_at = html.index('id="postmortem-title"')
    positions = [html.index(f">{u['shown']}</time>") for u in reversed(seed.updates)]
    assert postmortem_at < positions[0] < positions[1] < positions[2], "postmortem, then updates newest first"
    for update, word in zip(reversed(seed.updates), ["Resolved", "Monitoring", "Identified"], strict=True):
        assert f'datetime="{update["display_at"]}:00+00:00"' in html
        assert word in html[:html.index(f">{update['shown']}</time>")].rsplit('class="update"', 1)[-1]
    assert "Identified" in html and "This incident has been resolved." in html

    incident.refresh_from_db()
    assert incident.status == "postmortem"
    assert incident.started_at.isoformat() == "2017-02-05T21:56:00+00:00"
    assert incident.monitoring_at.isoformat() == "2017-02-06T00:16:00+00:00"
    assert incident.resolved_at.isoformat() == "2017-02-06T00:31:00+00:00"
    assert {u.created_by for u in incident.updates.all()} == {alice}
    assert incident.postmortem.created_by == alice
