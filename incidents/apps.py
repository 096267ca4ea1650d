from django.apps import AppConfig


class IncidentsConfig(AppConfig):
    name = "incidents"
    verbose_name = "Status page and incidents"

    def ready(self) -> None:
        from . import live

        live.connect_signals()
