"""Public pages: the status page, incident and maintenance pages, history by month, subscriptions.

The status and incident pages are rendered once per StatusPageState sequence and served from the
cache until something public changes (see live.py); anonymous visitors get the whole page cached,
signed-in ones a fresh frame around the cached body (the navigation differs per user)."""

from datetime import UTC, date, datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods
from django_ratelimit.core import is_ratelimited

from . import api, fastpath, live, services, tasks
from .forms import SubscribeForm, SubscriptionComponentsForm, UrlSubscribeForm
from .models import (
    RESOLVED_STATES,
    Component,
    ComponentStatus,
    Incident,
    MaintenanceStatus,
    StatusPageState,
    SubscriberKind,
)
from .uptime import uptime_for

RECENT_DAYS = 14


def _groups(components: list[Component]) -> list[dict]:
    """Consecutive components of one group together, in page order; hidden ones left out."""
    groups: list[dict] = []
    for c in components:
        if not c.is_visible:
            continue
        if groups and c.group_id and groups[-1]["group"] and groups[-1]["group"].pk == c.group_id:
            groups[-1]["components"].append(c)
        else:
            groups.append({"group": c.group, "components": [c]})
    for g in groups:
        statuses = [c.status for c in g["components"]]
        g["status"] = max(statuses, key=lambda s: api.SEVERITY[ComponentStatus(s)])
    return groups


def _status_context(state: StatusPageState) -> dict:
    now = timezone.now()
    components = api.all_components()
    window_start = now - timedelta(days=90)
    incidents = list(api.public_incidents().filter(
        Q(started_at__gte=window_start - timedelta(days=1)) | ~Q(status__in=RESOLVED_STATES)))
    unresolved = [i for i in incidents if not i.is_resolved]
    uptime = uptime_for(components, incidents, now=now)
    for c in components:
        c.uptime = uptime[c.pk]
    indicator = api.overall_indicator(components, unresolved)
    today = now.astimezone(UTC).date()
    recent = []
    for offset in range(RECENT_DAYS):
        day = today - timedelta(days=offset)
        recent.append({"date": day, "incidents": [i for i in incidents
                                                  if i.started_at.astimezone(UTC).date() == day]})
    return {
        "state": state,
        "indicator": indicator,
        # The same words as status.json's description, so the page and its API never disagree.
        "banner": api.INDICATORS[indicator],
        "groups": _groups(components),
        "unresolved": sorted(unresolved, key=lambda i: i.started_at, reverse=True),
        "active_maintenances": list(api.active_maintenances()),
        "upcoming_maintenances": list(api.upcoming_maintenances()),
        "recent": recent,
        "now": now,
    }


def _page(request: HttpRequest, name: str, body_template: str, page_template: str, build_context,
          fragment_url: str) -> HttpResponse:
    state = StatusPageState.current()
    html, _ = live.cached(f"body:{name}", lambda: render_to_string(body_template, build_context(state)), state)
    if request.GET.get("fragment"):
        response = HttpResponse(html)
        response["X-Status-Seq"] = str(state.seq)
        return fastpath.store(request, state.key, response)
    ctx = {"body": html, "state": state, "fragment_url": fragment_url}
    if request.user.is_authenticated:
        return render(request, page_template, ctx)
    page, _ = live.cached(f"page:{name}", lambda: render_to_string(page_template, ctx, request), state)
    return fastpath.store(request, state.key, HttpResponse(page))


@require_GET
def status_page(request: HttpRequest) -> HttpResponse:
    return _page(request, "status", "incidents/_status_body.html", "incidents/status.html", _status_context,
                 request.path)


@require_GET
def status_seq(request: HttpRequest) -> JsonResponse:
    """What the polling fallback asks: has anything changed since the sequence I show?"""
    response = JsonResponse({"seq": StatusPageState.current().seq})
    response["Cache-Control"] = "no-store"
    return response


def _public_incident(code: str) -> Incident:
    incident = api.public_incidents().select_related("postmortem").filter(code=code).first()
    if incident is None:
        raise Http404("No such incident")
    return incident


@require_GET
def incident_detail(request: HttpRequest, code: str) -> HttpResponse:
    incident = _public_incident(code)  # 404 before anything is cached for an unknown code

    def context(state: StatusPageState) -> dict:
        return {"incident": _public_incident(code), "state": state, "now": timezone.now()}

    return _page(request, f"incident:{incident.code}", "incidents/_incident_body.html", "incidents/incident.html",
                 context, request.path)


@require_GET
def maintenance_detail(request: HttpRequest, code: str) -> HttpResponse:
    maintenance = api.maintenances().filter(code=code).first()
    if maintenance is None:
        raise Http404("No such maintenance")
    return render(request, "incidents/maintenance.html", {"maintenance": maintenance, "now": timezone.now()})


def _month(value: str) -> date:
    try:
        return datetime.strptime(value, "%Y-%m").date()
    except ValueError:
        raise Http404("Months look like 2017-02") from None


@require_GET
def history(request: HttpRequest) -> HttpResponse:
    """Incidents and maintenance by month, newest month first, three months a page."""
    now = timezone.now().astimezone(UTC)
    first = _month(request.GET["month"]) if request.GET.get("month") else now.date().replace(day=1)
    months = []
    for back in range(3):
        year, month = divmod(first.year * 12 + first.month - 1 - back, 12)
        start = datetime(year, month + 1, 1, tzinfo=UTC)
        ny, nm = divmod(year * 12 + month + 1, 12)
        end = datetime(ny, nm + 1, 1, tzinfo=UTC)
        months.append({
            "start": start,
            "incidents": list(api.public_incidents().filter(started_at__gte=start, started_at__lt=end)),
            "maintenances": list(api.maintenances().filter(scheduled_for__gte=start, scheduled_for__lt=end,
                                                           status=MaintenanceStatus.COMPLETED)),
        })
    older = months[-1]["start"] - timedelta(days=1)
    ny, nm = divmod(first.year * 12 + first.month - 1 + 3, 12)
    newer_start = datetime(ny, nm + 1, 1, tzinfo=UTC)
    ctx = {
        "months": months,
        "older": older.strftime("%Y-%m"),
        "newer": newer_start.strftime("%Y-%m") if newer_start <= now else None,
        "now": now,
    }
    return render(request, "incidents/history.html", ctx)


def _subscribe_page(request: HttpRequest, email_form: SubscribeForm, url_form: UrlSubscribeForm,
                    status: int | None = None) -> HttpResponse:
    code = request.GET.get("incident") or request.POST.get("incident") or ""
    incident = Incident.objects.public().filter(code=code).first() if code else None
    ctx = {"form": email_form, "url_form": url_form, "incident": incident}
    return render(request, "incidents/subscribe.html", ctx,
                  status=status or (400 if email_form.errors or url_form.errors else 200))


def _subscribe_rate(group: str, request: HttpRequest) -> str:
    return settings.SUBSCRIBE_RATE


def _too_many_subscriptions(request: HttpRequest) -> bool:
    """Per client address, over the email and the webhook form together: each POST may send a mail or a
    request to somebody, so the forms must not be a way to flood them."""
    return is_ratelimited(request, group="incidents-subscribe", key="ip", rate=_subscribe_rate, method="POST",
                          increment=True)


TOO_MANY = "Too many subscription requests from your address; please try again later."


@require_http_methods(["GET", "POST"])
def subscribe(request: HttpRequest) -> HttpResponse:
    """Email subscriptions, to the page or (with ?incident=<code>) to one incident."""
    initial = {"incident": request.GET.get("incident", "")}
    form = SubscribeForm(request.POST or None, initial=initial)
    if request.method == "POST" and _too_many_subscriptions(request):
        form.add_error(None, TOO_MANY)
        return _subscribe_page(request, form, UrlSubscribeForm(initial=initial, auto_id="id_hook_%s"), status=429)
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        services.subscriber_subscribe_email(email=d["email"], components=list(d["components"]),
                                            incident=d["incident"])
        return render(request, "incidents/subscribe_sent.html", {"email": d["email"], "incident": d["incident"]})
    return _subscribe_page(request, form, UrlSubscribeForm(initial=initial, auto_id="id_hook_%s"))


@require_http_methods(["POST"])
def subscribe_url(request: HttpRequest) -> HttpResponse:
    """Webhook and Slack subscriptions anyone may ask for: double opt-in through the endpoint itself."""
    form = UrlSubscribeForm(request.POST, auto_id="id_hook_%s")
    if _too_many_subscriptions(request):
        form.add_error(None, TOO_MANY)
        return _subscribe_page(request, SubscribeForm(initial={"incident": request.POST.get("incident", "")}), form,
                               status=429)
    if form.is_valid():
        d = form.cleaned_data
        services.subscriber_subscribe_url(kind=d["kind"], url=d["url"], components=list(d["components"]),
                                          incident=d["incident"])
        return render(request, "incidents/subscribe_sent.html", {"url": d["url"], "kind": d["kind"],
                                                                  "incident": d["incident"]})
    return _subscribe_page(request, SubscribeForm(initial={"incident": request.POST.get("incident", "")}), form)


@require_http_methods(["GET", "POST"])
def confirm(request: HttpRequest, token: str) -> HttpResponse:
    """GET shows a button and POST confirms, so mail scanners that follow links confirm nothing."""
    subscriber = tasks.subscriber_from_token(token, salt=tasks.CONFIRM_SALT, max_age=tasks.CONFIRM_MAX_AGE)
    if subscriber is None:
        return render(request, "incidents/token_invalid.html", status=400)
    if request.method == "POST":
        newly = services.subscriber_confirm(subscriber=subscriber)
        # A webhook's signing secret is shown once, to whoever confirmed it: they can read the endpoint.
        show_secret = newly and subscriber.kind == SubscriberKind.WEBHOOK
        return render(request, "incidents/confirmed.html", {"subscriber": subscriber, "show_secret": show_secret})
    return render(request, "incidents/confirm.html", {"subscriber": subscriber})


@require_http_methods(["GET", "POST"])
def manage_subscription(request: HttpRequest, token: str) -> HttpResponse:
    """The subscriber's own signed link (mailed to them) is the only way to change a confirmed subscription."""
    subscriber = tasks.subscriber_from_token(token, salt=tasks.MANAGE_SALT, max_age=tasks.CONFIRM_MAX_AGE)
    if subscriber is None or subscriber.confirmed_at is None or subscriber.unsubscribed_at is not None:
        return render(request, "incidents/token_invalid.html", status=400)
    form = SubscriptionComponentsForm(request.POST or None, initial={"components": subscriber.components.all()})
    saved = False
    if request.method == "POST" and form.is_valid():
        services.subscriber_update_components(subscriber=subscriber, components=list(form.cleaned_data["components"]))
        saved = True
    ctx = {"form": form, "subscriber": subscriber, "saved": saved,
           "unsubscribe_token": tasks.unsubscribe_token(subscriber)}
    return render(request, "incidents/manage_subscription.html", ctx, status=400 if form.errors else 200)


@csrf_exempt  # the signed token authorizes it, and mail clients' one-click unsubscribe POSTs without a CSRF token
@require_http_methods(["GET", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    subscriber = tasks.subscriber_from_token(token, salt=tasks.UNSUBSCRIBE_SALT)
    if subscriber is None:
        return render(request, "incidents/token_invalid.html", status=400)
    if request.method == "POST":
        services.subscriber_unsubscribe(subscriber=subscriber)
        return render(request, "incidents/unsubscribed.html", {"subscriber": subscriber})
    return render(request, "incidents/unsubscribe.html", {"subscriber": subscriber})
