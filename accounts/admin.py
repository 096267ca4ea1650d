from django.contrib import admin

from .models import ApiToken, AuditEntry, Grant, Membership, Organization, Team


class MembershipInline(admin.TabularInline):
    model = Membership
    raw_id_fields = ("user",)
    extra = 0


class GrantInline(admin.TabularInline):
    model = Grant
    raw_id_fields = ("user", "team")
    extra = 0


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ("name", "new_repositories_private", "created_at")
    search_fields = ("name",)
    inlines = [MembershipInline, GrantInline]


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ("name", "organization", "sso_groups")
    filter_horizontal = ("members",)


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "prefix", "created_at", "created_by", "last_used_at", "expires_at", "revoked_at")
    readonly_fields = ("prefix", "hashed_secret", "created_at", "created_by", "last_used_at")
    list_filter = ("kind",)
    search_fields = ("name", "prefix")


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    list_display = ("at", "actor_label", "organization", "action", "target", "detail")
    list_filter = ("action",)
    search_fields = ("actor_label", "organization", "target")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
