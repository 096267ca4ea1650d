"""Django admin for the status page's rows; day-to-day work happens in the incident manager UI."""

from django.contrib import admin

from .models import (
    Component,
    ComponentGroup,
    ComponentStatusChange,
    Incident,
    IncidentTemplate,
    IncidentUpdate,
    Maintenance,
    MaintenanceUpdate,
    Postmortem,
    Subscriber,
)


class IncidentUpdateInline(admin.StackedInline):
    model = IncidentUpdate
    extra = 0
    readonly_fields = ["code", "created_by", "affected_components"]


@admin.register(Incident)
class IncidentAdmin(admin.ModelAdmin):
    list_display = ["name", "status", "impact", "started_at", "published_at"]
    list_filter = ["status", "impact"]
    search_fields = ["name"]
    readonly_fields = ["code", "created_by"]
    inlines = [IncidentUpdateInline]


@admin.register(Component)
class ComponentAdmin(admin.ModelAdmin):
    list_display = ["name", "group", "status", "position", "queues", "show_uptime"]
    list_editable = ["position", "queues"]
    readonly_fields = ["code", "status"]


@admin.register(ComponentGroup)
class ComponentGroupAdmin(admin.ModelAdmin):
    list_display = ["name", "position"]
    readonly_fields = ["code"]


@admin.register(ComponentStatusChange)
class ComponentStatusChangeAdmin(admin.ModelAdmin):
    list_display = ["component", "old_status", "new_status", "at", "created_by"]
    list_filter = ["component"]


class MaintenanceUpdateInline(admin.StackedInline):
    model = MaintenanceUpdate
    extra = 0
    readonly_fields = ["code", "created_by", "affected_components"]


@admin.register(Maintenance)
class MaintenanceAdmin(admin.ModelAdmin):
    list_display = ["name", "status", "scheduled_for", "scheduled_until", "auto_transition"]
    readonly_fields = ["code", "created_by"]
    inlines = [MaintenanceUpdateInline]


@admin.register(Postmortem)
class PostmortemAdmin(admin.ModelAdmin):
    list_display = ["incident", "published_at", "updated_by"]


@admin.register(IncidentTemplate)
class IncidentTemplateAdmin(admin.ModelAdmin):
    list_display = ["name", "title", "status", "impact"]


@admin.register(Subscriber)
class SubscriberAdmin(admin.ModelAdmin):
    list_display = ["__str__", "kind", "confirmed_at", "unsubscribed_at", "last_delivery_status"]
    list_filter = ["kind"]
    readonly_fields = ["code", "secret", "last_delivery_at", "last_delivery_status"]
