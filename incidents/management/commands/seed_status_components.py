from django.core.management.base import BaseCommand

from incidents.models import Component, ComponentGroup

DEMO = [
    ("Builds", [("Linux builds", "builds.linux", "Jobs on the container-based Linux infrastructure."),
                ("Build scheduling", "", "Starting queued builds.")]),
    ("Web", [("Website and dashboards", "", "Build pages, logs and badges."),
             ("Worker API", "", "Where workers report states and logs.")]),
]


class Command(BaseCommand):
    help = "Give an empty status page a few components, mapped to the demo fleet's queue (used by ./bb run)."

    def handle(self, *args, **options):
        if Component.objects.exists():
            return
        for group_position, (group_name, components) in enumerate(DEMO):
            group = ComponentGroup.objects.create(name=group_name, position=group_position)
            for position, (name, queues, description) in enumerate(components):
                Component.objects.create(group=group, name=name, queues=queues, description=description,
                                         position=position)
        self.stdout.write(f"Created {sum(len(c) for _, c in DEMO)} status page components.")
