"""The incident manager UI, for staff and members of the "incident managers" group.

Every view checks that server-side (anonymous: to the login page; signed in without the right: 403),
and every write goes through services.py with the acting user recorded."""

from collections.abc import Callable
from functools import wraps

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.db.models import Prefetch
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from . import services
from .api import page_order
from .forms import (
    ComponentForm,
    ComponentGroupForm,
    ComponentStatusForm,
    IncidentOpenForm,
    IncidentTemplateForm,
    IncidentUpdateForm,
    MaintenanceForm,
    MaintenanceUpdateForm,
    PostmortemForm,
    WebhookForm,
)
from .markdown import render_markdown
from .models import (
    RESOLVED_STATES,
    URL_KINDS,
    Component,
    ComponentGroup,
    ComponentStatus,
    Incident,
    IncidentTemplate,
    IncidentUpdate,
    Maintenance,
    MaintenanceStatus,
    Subscriber,
    SubscriberKind,
)

MANAGERS_GROUP = "incident managers"


def can_manage_incidents(user) -> bool:
    return user.is_authenticated and user.is_active and (
        user.is_staff or user.groups.filter(name=MANAGERS_GROUP).exists())


def incident_manager_required(view: Callable) -> Callable:
    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not can_manage_incidents(request.user):
            raise PermissionDenied("Only staff and incident managers may do this.")
        return view(request, *args, **kwargs)

    return wrapper


def _incident(code: str) -> Incident:
    return get_object_or_404(Incident.objects.prefetch_related(
        Prefetch("updates", IncidentUpdate.objects.select_related("created_by").order_by("-display_at", "-id")),
        "components"), code=code)


@incident_manager_required
def dashboard(request: HttpRequest) -> HttpResponse:
    ctx = {
        "drafts": Incident.objects.filter(published_at__isnull=True),
        "unresolved": Incident.objects.public().unresolved(),
        "recent": Incident.objects.public().filter(status__in=RESOLVED_STATES)[:20],
        "maintenances": Maintenance.objects.exclude(status=MaintenanceStatus.COMPLETED),
        "components": sorted(Component.objects.select_related("group"), key=page_order),
        "groups": ComponentGroup.objects.all(),
        "templates": IncidentTemplate.objects.all(),
        "webhooks": Subscriber.objects.active().filter(kind__in=URL_KINDS),
        "email_count": Subscriber.objects.active().filter(kind=SubscriberKind.EMAIL).count(),
        "status_form": ComponentStatusForm(),
    }
    return render(request, "incidents/manage/dashboard.html", ctx)


@incident_manager_required
@require_http_methods(["GET", "POST"])
def incident_new(request: HttpRequest) -> HttpResponse:
    initial, component_initial = {}, {}
    chosen = request.GET.get("template", "")
    template = IncidentTemplate.objects.filter(pk=int(chosen)).first() if chosen.isdigit() else None
    if template:
        initial = {"name": template.title, "status": template.status, "impact": template.impact,
                   "message": template.body}
        component_initial = {c.code: c.status for c in template.components.all()}
    form = IncidentOpenForm(request.POST or None, initial=initial, component_initial=component_initial)
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        incident = services.incident_open(name=d["name"], status=d["status"], impact=d["impact"], message=d["message"],
                                          component_statuses=form.component_statuses(), notify=d["notify"],
                                          display_at=d["display_at"], created_by=request.user)
        messages.success(request, "Incident opened and published.")
        return redirect("incidents-manage-incident", code=incident.code)
    ctx = {"form": form, "templates": IncidentTemplate.objects.all(), "template": template}
    return render(request, "incidents/manage/incident_new.html", ctx, status=400 if form.errors else 200)


@incident_manager_required
@require_http_methods(["GET", "POST"])
def incident_manage(request: HttpRequest, code: str) -> HttpResponse:
    """A published incident: post an update. A draft: review and publish it."""
    incident = _incident(code)
    if not incident.is_published:
        return _draft(request, incident)
    form = IncidentUpdateForm(request.POST or None, initial={"status": incident.status})
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        services.incident_update_post(incident=incident, status=d["status"], message=d["message"],
                                      component_statuses=form.component_statuses(), notify=d["notify"],
                                      display_at=d["display_at"], impact=d["impact"] or None,
                                      restore_components=d["restore_components"], created_by=request.user)
        messages.success(request, "Update posted.")
        return redirect("incidents-manage-incident", code=incident.code)
    ctx = {"incident": incident, "form": form}
    return render(request, "incidents/manage/incident.html", ctx, status=400 if form.errors else 200)


def _draft(request: HttpRequest, incident: Incident) -> HttpResponse:
    first = incident.updates.order_by("display_at", "id").first()
    initial = {"name": incident.name, "status": incident.status, "impact": incident.impact,
               "message": first.body if first else "", "notify": True}
    form = IncidentOpenForm(request.POST or None, initial=initial,
                            component_initial={c.code: c.status for c in incident.components.all()})
    form.fields.pop("display_at")
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        services.incident_publish(incident=incident, name=d["name"], status=d["status"], impact=d["impact"],
                                  message=d["message"], component_statuses=form.component_statuses(),
                                  notify=d["notify"], by=request.user)
        messages.success(request, "Draft published.")
        return redirect("incidents-manage-incident", code=incident.code)
    ctx = {"incident": incident, "form": form}
    return render(request, "incidents/manage/draft.html", ctx, status=400 if form.errors else 200)


@incident_manager_required
@require_http_methods(["GET", "POST"])
def postmortem(request: HttpRequest, code: str) -> HttpResponse:
    incident = _incident(code)
    existing = getattr(incident, "postmortem", None)
    form = PostmortemForm(request.POST or None, initial={"body": existing.body if existing else ""})
    preview = None
    if request.method == "POST" and form.is_valid():
        d, action = form.cleaned_data, request.POST.get("action", "save")
        if action == "preview":
            preview = render_markdown(d["body"])
        elif action == "publish":
            services.postmortem_publish(incident=incident, body=d["body"], notify=d["notify"], by=request.user)
            messages.success(request, "Postmortem published.")
            return redirect("incidents-manage-incident", code=incident.code)
        else:
            services.postmortem_save(incident=incident, body=d["body"], by=request.user)
            messages.success(request, "Postmortem draft saved.")
            return redirect("incidents-manage-postmortem", code=incident.code)
    elif existing:
        preview = render_markdown(existing.body)
    ctx = {"incident": incident, "form": form, "preview": preview, "postmortem": existing}
    return render(request, "incidents/manage/postmortem.html", ctx, status=400 if form.errors else 200)


@incident_manager_required
@require_http_methods(["GET", "POST"])
def maintenance_new(request: HttpRequest) -> HttpResponse:
    form = MaintenanceForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        m = services.maintenance_schedule(name=d["name"], scheduled_for=d["scheduled_for"],
                                          scheduled_until=d["scheduled_until"], message=d["message"],
                                          components=list(d["components"]), auto_transition=d["auto_transition"],
                                          notify=d["notify"], created_by=request.user)
        messages.success(request, "Maintenance scheduled.")
        return redirect("incidents-manage-maintenance", code=m.code)
    return render(request, "incidents/manage/maintenance_new.html", {"form": form},
                  status=400 if form.errors else 200)


@incident_manager_required
@require_http_methods(["GET", "POST"])
def maintenance_manage(request: HttpRequest, code: str) -> HttpResponse:
    maintenance = get_object_or_404(Maintenance, code=code)
    form = MaintenanceUpdateForm(request.POST or None, initial={"status": maintenance.status})
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        services.maintenance_update_post(maintenance=maintenance, status=d["status"], message=d["message"],
                                         notify=d["notify"], created_by=request.user)
        messages.success(request, "Maintenance updated.")
        return redirect("incidents-manage-maintenance", code=maintenance.code)
    ctx = {"maintenance": maintenance, "form": form,
           "updates": maintenance.updates.select_related("created_by").order_by("-display_at", "-id")}
    return render(request, "incidents/manage/maintenance.html", ctx, status=400 if form.errors else 200)


@incident_manager_required
@require_POST
def component_status(request: HttpRequest, code: str) -> HttpResponse:
    component = get_object_or_404(Component, code=code)
    form = ComponentStatusForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Pick a valid status.")
        return redirect("incidents-manage")
    label = ComponentStatus(form.cleaned_data["status"]).label.lower()
    if services.component_status_set(component=component, status=form.cleaned_data["status"], by=request.user):
        messages.success(request, f"{component.name} is now {label}.")
    else:
        messages.info(request, f"{component.name} is already {label}; nothing changed.")
    return redirect("incidents-manage")


def _edit_page_part(request: HttpRequest, form_class, instance, title: str, saved: str) -> HttpResponse:
    """Create or edit a component or group, recording who did it."""
    form = form_class(request.POST or None, instance=instance)
    if request.method == "POST" and form.is_valid():
        form.instance.updated_by = request.user
        form.save()
        messages.success(request, saved)
        return redirect("incidents-manage")
    return render(request, "incidents/manage/form.html", {"form": form, "title": title},
                  status=400 if form.errors else 200)


@incident_manager_required
@require_http_methods(["GET", "POST"])
def component_edit(request: HttpRequest, code: str | None = None) -> HttpResponse:
    component = get_object_or_404(Component, code=code) if code else None
    return _edit_page_part(request, ComponentForm, component,
                           f"Component {component.name}" if component else "New component", "Component saved.")


@incident_manager_required
@require_http_methods(["GET", "POST"])
def group_edit(request: HttpRequest, code: str | None = None) -> HttpResponse:
    group = get_object_or_404(ComponentGroup, code=code) if code else None
    return _edit_page_part(request, ComponentGroupForm, group,
                           f"Group {group.name}" if group else "New component group", "Group saved.")


@incident_manager_required
@require_http_methods(["GET", "POST"])
def template_edit(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    template = get_object_or_404(IncidentTemplate, pk=pk) if pk else None
    form = IncidentTemplateForm(request.POST or None, instance=template)
    if request.method == "POST" and form.is_valid():
        saved = form.save(commit=False)
        if saved.created_by_id is None:
            saved.created_by = request.user
        saved.save()
        form.save_m2m()
        messages.success(request, "Template saved.")
        return redirect("incidents-manage")
    return render(request, "incidents/manage/form.html",
                  {"form": form, "title": f"Template {template.name}" if template else "New incident template"},
                  status=400 if form.errors else 200)


@incident_manager_required
@require_http_methods(["GET", "POST"])
def webhook_new(request: HttpRequest) -> HttpResponse:
    form = WebhookForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        subscriber = services.webhook_create(url=d["url"], components=list(d["components"]), created_by=request.user,
                                             allow_private=d["allow_private"], kind=d["kind"])
        # The secret is shown this once; the receiver needs it to check X-Buildboard-Signature.
        return render(request, "incidents/manage/webhook_created.html", {"subscriber": subscriber})
    return render(request, "incidents/manage/form.html", {"form": form, "title": "New webhook"},
                  status=400 if form.errors else 200)


@incident_manager_required
@require_POST
def webhook_delete(request: HttpRequest, code: str) -> HttpResponse:
    subscriber = get_object_or_404(Subscriber, code=code, kind__in=URL_KINDS)
    services.subscriber_unsubscribe(subscriber=subscriber)
    messages.success(request, "Webhook removed.")
    return redirect("incidents-manage")
