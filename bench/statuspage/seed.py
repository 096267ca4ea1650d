"""Fill the benchmark's database with a status page of realistic size: groups, components, 90 days of
incidents with updates and history, a postmortem, maintenance. Run with the benchmark's environment."""

import os
import random
from datetime import timedelta

import django


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "buildboard.settings")
    django.setup()
    from django.utils import timezone

    from incidents import services
    from incidents.models import Component, ComponentGroup

    rng = random.Random(2017)
    now = timezone.now()
    created = now - timedelta(days=120)
    components = []
    for g, (group, names) in enumerate([
        ("Builds", ["Linux builds", "macOS builds", "Windows builds", "GPU builds"]),
        ("Platform", ["Website", "API", "Log streaming", "Notifications"]),
    ]):
        grp = ComponentGroup.objects.create(name=group, position=g)
        for p, name in enumerate(names):
            components.append(Component.objects.create(name=name, group=grp, position=p, created_at=created,
                                                       description=f"{name} on the buildboard fleet"))
    for n in range(24):
        start = now - timedelta(days=rng.uniform(1, 88))
        affected = rng.sample(components, rng.randint(1, 3))
        incident = services.incident_open(
            name=f"Incident {n}: delays on {affected[0].name}", status="investigating",
            impact=rng.choice(["minor", "major"]), message="We are investigating reports of **delays**.",
            component_statuses={c: rng.choice(["degraded_performance", "partial_outage", "major_outage"])
                                 for c in affected},
            notify=False, created_by=None, display_at=start)
        for step, status in enumerate(["identified", "monitoring", "resolved"], start=1):
            services.incident_update_post(
                incident=incident, status=status, message=f"Update {step}: the cause is *understood*.",
                component_statuses={c: "operational" for c in affected} if status == "resolved" else {},
                notify=False, created_by=None, display_at=start + timedelta(minutes=25 * step))
        if n % 6 == 0:
            services.postmortem_publish(incident=incident, body="## What happened\n\n- a\n- b\n\n## Next\n\n1. c",
                                        notify=False, by=None)
    services.incident_open(name="Slow log streaming", status="identified", impact="minor",
                           message="Logs arrive late.", component_statuses={components[6]: "degraded_performance"},
                           notify=False, created_by=None)
    services.maintenance_schedule(name="Database upgrade", scheduled_for=now + timedelta(days=2),
                                  scheduled_until=now + timedelta(days=2, hours=1), message="Planned.",
                                  components=components[4:6], auto_transition=True, notify=False, created_by=None)


if __name__ == "__main__":
    main()
