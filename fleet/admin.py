from django.contrib import admin

from .models import Alert, AlertRule, ErrorSignature, QueueSettings, Worker


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
