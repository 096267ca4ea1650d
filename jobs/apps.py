from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Builds and jobs"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers them)
