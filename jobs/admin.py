from django.contrib import admin

from .models import Alert, AlertRule, ApiToken, Build, ErrorSignature, Job, LogPart, QueueSettings, Repository, Worker


@admin.register(Repository)
class RepositoryAdmin(admin.ModelAdmin):
    list_display = ("owner", "name", "private", "created_at")
    list_filter = ("private",)
    search_fields = ("owner", "name")


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


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("name", "prefix", "created_at", "last_used_at", "revoked")
    readonly_fields = ("prefix", "hashed_secret", "created_at", "last_used_at")
    list_filter = ("revoked",)


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    list_display = ("name", "queue", "version", "state", "busy", "pool_size", "last_seen_at", "drain_requested")
    list_filter = ("queue", "state", "version")
    search_fields = ("name", "host")
    readonly_fields = ("first_seen_at", "last_seen_at", "heartbeats", "seq")


@admin.register(ErrorSignature)
class ErrorSignatureAdmin(admin.ModelAdmin):
    list_display = ("signature", "queue", "count", "first_seen_at", "last_seen_at")
    list_filter = ("queue",)
    search_fields = ("signature",)


@admin.register(QueueSettings)
class QueueSettingsAdmin(admin.ModelAdmin):
    list_display = ("queue", "desired_version", "expected_capacity", "drain", "updated_at", "updated_by")


@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin):
    list_display = ("kind", "enabled", "updated_at", "updated_by")


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = ("title", "rule", "subject", "state", "fired_at", "acknowledged_at", "resolved_at")
    list_filter = ("state", "rule")
    search_fields = ("title", "subject")
    readonly_fields = ("evidence",)
