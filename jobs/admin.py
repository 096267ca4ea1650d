from django.contrib import admin

from .models import Build, DeadLetter, Job, LogArchive, LogPart, Repository


@admin.register(Repository)
class RepositoryAdmin(admin.ModelAdmin):
    list_display = ("owner", "name", "private", "web_url", "created_at")
    list_filter = ("private",)
    search_fields = ("owner", "name")
    fields = ("owner", "name", "private", "web_url", "error_pattern", "log_retention_days")


class JobInline(admin.TabularInline):
    model = Job
    fields = ("number", "state", "attempt", "exit_code", "inconsistent", "worker_version")
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(Build)
class BuildAdmin(admin.ModelAdmin):
    list_display = ("__str__", "branch", "state", "event", "created_at")
    list_filter = ("state", "event")
    search_fields = ("repository__owner", "repository__name", "branch", "commit")
    inlines = [JobInline]


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("__str__", "state", "attempt", "exit_code", "inconsistent", "worker", "worker_version")
    list_filter = ("state", "inconsistent", "queue", "worker_version")
    search_fields = ("number", "worker")
    raw_id_fields = ("build",)


@admin.register(LogPart)
class LogPartAdmin(admin.ModelAdmin):
    list_display = ("job", "attempt", "number", "final", "created_at")
    raw_id_fields = ("job",)



@admin.register(DeadLetter)
class DeadLetterAdmin(admin.ModelAdmin):
    """Log parts set aside because they could not be stored; delete them once dealt with."""

    list_display = ("created_at", "job_id", "attempt", "number", "error")
    list_filter = ("created_at",)
    search_fields = ("job_id", "error")
    readonly_fields = ("job_id", "attempt", "number", "payload_preview", "error", "created_at")
    exclude = ("payload",)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(LogArchive)
class LogArchiveAdmin(admin.ModelAdmin):
    list_display = ("job", "attempt", "size", "compressed_size", "log_ended_at", "expired_at", "problem")
    list_filter = ("expired_at",)
    search_fields = ("key", "problem")
    readonly_fields = [f.name for f in LogArchive._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False
