from django.apps import AppConfig


class BuildboardConfig(AppConfig):
    """The site itself: wiring only, plus its system checks."""

    name = "buildboard"
    verbose_name = "buildboard"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers them)
