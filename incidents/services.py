"""Workflows of incident communication: each writes several rows in one transaction, records who
did it, and (when asked) enqueues notifications once the transaction has committed."""

from datetime import datetime, timedelta

from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from .models import (
    RESOLVED_STATES,
    Component,
    ComponentStatus,
    Incident,
    IncidentStatus,
    IncidentUpdate,
    Maintenance,
    MaintenanceStatus,
    MaintenanceUpdate,
    Postmortem,
    Subscriber,
    SubscriberKind,
)

CONFIRMATION_RESEND = timedelta(minutes=10)
MAINTENANCE_MESSAGES = {
    MaintenanceStatus.IN_PROGRESS: "Scheduled maintenance is currently in progress. "
                                   "We will provide updates as necessary.",
    MaintenanceStatus.COMPLETED: "The scheduled maintenance has been completed.",
}


def _notify(kind: str, pk: int) -> None:
    from . import tasks  # tasks import services' models; keep the import graph one-way at load time

    transaction.on_commit(lambda: tasks.notify_subscribers.delay(kind, pk))


def _apply_statuses(component_statuses: dict[Component, str], *, at: datetime, by, incident=None,
                    maintenance=None) -> list[dict]:
    """Set each component's status; returns Statuspage's affected_components for every component named,
    changed or not (naming a component in an update is how staff say it is affected)."""
    affected = []
    for component, status in sorted(component_statuses.items(), key=lambda item: item[0].position):
        change = component.set_status(status, at=at, by=by, incident=incident, maintenance=maintenance)
        affected.append(change or {"code": component.code, "name": component.name, "old_status": status,
                                   "new_status": status})
    return affected


@transaction.atomic
def incident_open(*, name: str, status: str, impact: str, message: str, component_statuses: dict[Component, str],
                  notify: bool, created_by, display_at: datetime | None = None) -> Incident:
    """Open and publish an incident with its first update."""
    at = display_at or timezone.now()
    incident = Incident.objects.create(name=name, status=status, impact=impact, started_at=at, created_at=at,
                                       published_at=timezone.now(), created_by=created_by)
    incident.record_status(status, at)
    incident.save()
    incident.components.set(component_statuses)
    affected = _apply_statuses(component_statuses, at=at, by=created_by, incident=incident)
    update = IncidentUpdate.objects.create(incident=incident, status=status, body=message, display_at=at,
                                           affected_components=affected, deliver_notifications=notify,
                                           created_by=created_by)
    if notify:
        _notify("incident_update", update.pk)
    return incident


@transaction.atomic
def incident_draft_from_alert(*, title: str, message: str, queues: list[str], created_by=None) -> Incident:
    """An unpublished draft for staff to review: not on the public page, API or feeds, and nobody is
    notified. Its affected components are those depending on any of `queues`."""
    now = timezone.now()
    incident = Incident.objects.create(name=title[:200], status=IncidentStatus.INVESTIGATING, started_at=now,
                                       created_at=now, published_at=None, created_by=created_by)
    incident.components.set(Component.objects.for_queues(queues))
    IncidentUpdate.objects.create(incident=incident, status=IncidentStatus.INVESTIGATING, body=message,
                                  display_at=now, created_by=created_by)
    return incident


def incident_staff_url(incident: Incident) -> str:
    """Where staff review, edit and publish the incident (absolute path)."""
    return reverse("incidents-manage-incident", args=[incident.code])


@transaction.atomic
def incident_publish(*, incident: Incident, name: str, status: str, impact: str, message: str,
                     component_statuses: dict[Component, str], notify: bool, by) -> bool:
    """Publish a draft, with the fields as staff reviewed them. False if it was already published."""
    incident = Incident.objects.select_for_update().get(pk=incident.pk)
    if incident.published_at is not None:
        return False
    now = timezone.now()
    incident.name, incident.impact, incident.published_at = name, impact, now
    incident.record_status(status, incident.started_at)
    incident.save()
    incident.components.add(*component_statuses)
    affected = _apply_statuses(component_statuses, at=now, by=by, incident=incident)
    first = incident.updates.order_by("display_at", "id").first()
    if first is None:
        first = IncidentUpdate(incident=incident, display_at=incident.started_at, created_by=by)
    first.status, first.body, first.affected_components = status, message, affected
    first.deliver_notifications = notify
    first.save()
    if notify:
        _notify("incident_update", first.pk)
    return True


@transaction.atomic
def incident_update_post(*, incident: Incident, status: str, message: str, component_statuses: dict[Component, str],
                         notify: bool, created_by, display_at: datetime | None = None,
                         impact: str | None = None, restore_components: bool = False) -> IncidentUpdate:
    """Post an update. Resolving with `restore_components` also returns every affected component that
    staff did not set explicitly to operational (components under maintenance belong to the maintenance)."""
    incident = Incident.objects.select_for_update().get(pk=incident.pk)
    at = display_at or timezone.now()
    incident.record_status(status, at)
    if impact:
        incident.impact = impact
    incident.save()
    incident.components.add(*component_statuses)
    if restore_components and status in RESOLVED_STATES:
        component_statuses = dict(component_statuses)
        for component in incident.components.select_for_update().exclude(
                status__in=(ComponentStatus.OPERATIONAL, ComponentStatus.UNDER_MAINTENANCE)):
            component_statuses.setdefault(component, ComponentStatus.OPERATIONAL)
    affected = _apply_statuses(component_statuses, at=at, by=created_by, incident=incident)
    update = IncidentUpdate.objects.create(incident=incident, status=status, body=message, display_at=at,
                                           affected_components=affected,
                                           deliver_notifications=notify and incident.is_published,
                                           created_by=created_by)
    if notify and incident.is_published:
        _notify("incident_update", update.pk)
    return update


@transaction.atomic
def postmortem_save(*, incident: Incident, body: str, by) -> Postmortem:
    postmortem, created = Postmortem.objects.get_or_create(incident=incident,
                                                           defaults={"body": body, "created_by": by, "updated_by": by})
    if not created:
        postmortem.body, postmortem.updated_by = body, by
        postmortem.save()
    return postmortem


@transaction.atomic
def postmortem_publish(*, incident: Incident, body: str, notify: bool, by) -> Postmortem:
    """Save and publish; a resolved incident then shows the `postmortem` status, as on Statuspage."""
    postmortem = postmortem_save(incident=incident, body=body, by=by)
    if postmortem.published_at is None:
        postmortem.published_at = timezone.now()
        postmortem.save(update_fields=["published_at"])
    incident = Incident.objects.select_for_update().get(pk=incident.pk)
    if incident.status in RESOLVED_STATES:
        incident.status = IncidentStatus.POSTMORTEM
    incident.updated_at = timezone.now()
    incident.save()
    if notify and incident.is_published:
        _notify("postmortem", postmortem.pk)
    return postmortem


@transaction.atomic
def component_status_set(*, component: Component, status: str, by) -> bool:
    component = Component.objects.select_for_update().get(pk=component.pk)
    return component.set_status(status, by=by) is not None


@transaction.atomic
def maintenance_schedule(*, name: str, scheduled_for: datetime, scheduled_until: datetime, message: str,
                         components: list[Component], auto_transition: bool, notify: bool,
                         created_by) -> Maintenance:
    maintenance = Maintenance.objects.create(name=name, scheduled_for=scheduled_for, scheduled_until=scheduled_until,
                                             auto_transition=auto_transition, created_by=created_by)
    maintenance.components.set(components)
    update = MaintenanceUpdate.objects.create(
        maintenance=maintenance, status=MaintenanceStatus.SCHEDULED, body=message, deliver_notifications=notify,
        affected_components=[{"code": c.code, "name": c.name, "old_status": c.status, "new_status": c.status}
                             for c in components],
        created_by=created_by)
    if notify:
        _notify("maintenance_update", update.pk)
    return maintenance


@transaction.atomic
def maintenance_update_post(*, maintenance: Maintenance, status: str, message: str, notify: bool,
                            created_by) -> MaintenanceUpdate:
    """Move maintenance to `status`: in progress puts its components under maintenance, completed
    brings them back to operational."""
    maintenance = Maintenance.objects.select_for_update().get(pk=maintenance.pk)
    now = timezone.now()
    components = list(maintenance.components.select_for_update())
    target = None
    if status in (MaintenanceStatus.IN_PROGRESS, MaintenanceStatus.VERIFYING):
        target = ComponentStatus.UNDER_MAINTENANCE
        maintenance.started_at = maintenance.started_at or now
    elif status == MaintenanceStatus.COMPLETED:
        target = ComponentStatus.OPERATIONAL
        maintenance.started_at = maintenance.started_at or now
        maintenance.completed_at = now
    statuses = {}
    for c in components:
        # Completing restores only what this maintenance put under maintenance, not a real outage.
        if target == ComponentStatus.OPERATIONAL and c.status != ComponentStatus.UNDER_MAINTENANCE:
            continue
        statuses[c] = target or c.status
    affected = _apply_statuses(statuses, at=now, by=created_by, maintenance=maintenance)
    maintenance.status, maintenance.updated_at = status, now
    maintenance.save()
    update = MaintenanceUpdate.objects.create(maintenance=maintenance, status=status, body=message,
                                              affected_components=affected, deliver_notifications=notify,
                                              created_by=created_by)
    if notify:
        _notify("maintenance_update", update.pk)
    return update


def maintenance_transition_due(*, now: datetime | None = None) -> int:
    """Start due and complete finished maintenance that asked for it; returns how many moved.
    Each row is re-checked under lock, so two beat runs cannot move one twice."""
    now = now or timezone.now()
    moved = 0
    due = Maintenance.objects.filter(auto_transition=True)
    for pk in due.filter(status=MaintenanceStatus.SCHEDULED, scheduled_for__lte=now).values_list("pk", flat=True):
        with transaction.atomic():
            m = Maintenance.objects.select_for_update().filter(pk=pk, status=MaintenanceStatus.SCHEDULED).first()
            if m is not None:
                maintenance_update_post(maintenance=m, status=MaintenanceStatus.IN_PROGRESS,
                                        message=MAINTENANCE_MESSAGES[MaintenanceStatus.IN_PROGRESS],
                                        notify=True, created_by=None)
                moved += 1
    active = due.filter(status__in=(MaintenanceStatus.IN_PROGRESS, MaintenanceStatus.VERIFYING),
                        scheduled_until__lte=now)
    for pk in active.values_list("pk", flat=True):
        with transaction.atomic():
            m = Maintenance.objects.select_for_update().filter(
                pk=pk, status__in=(MaintenanceStatus.IN_PROGRESS, MaintenanceStatus.VERIFYING)).first()
            if m is not None:
                maintenance_update_post(maintenance=m, status=MaintenanceStatus.COMPLETED,
                                        message=MAINTENANCE_MESSAGES[MaintenanceStatus.COMPLETED],
                                        notify=True, created_by=None)
                moved += 1
    return moved


@transaction.atomic
def subscriber_subscribe_email(*, email: str, components: list[Component], incident: Incident | None = None
                               ) -> Subscriber:
    """A pending email subscription (to the page, or to one incident) and its confirmation mail
    (double opt-in). Subscribing again with a pending or lapsed address starts over rather than
    failing, and says nothing about whether the address was known. A confirmed subscription is not
    changed from this anonymous form: its owner gets a mail with a signed link to change it
    (subscriber_update_components)."""
    from . import tasks

    subscriber = Subscriber.objects.filter(kind=SubscriberKind.EMAIL, email__iexact=email, incident=incident).first()
    if subscriber is None:
        subscriber = Subscriber.objects.create(kind=SubscriberKind.EMAIL, email=email, incident=incident)
    elif subscriber.unsubscribed_at is not None:
        subscriber.unsubscribed_at = subscriber.confirmed_at = None
        subscriber.save()
    confirmed = subscriber.confirmed_at is not None
    if not confirmed:
        subscriber.components.set(components)
    # One mail per address per CONFIRMATION_RESEND: the form must not be a way to flood someone
    # else's mailbox.
    recent = subscriber.confirmation_sent_at and timezone.now() - subscriber.confirmation_sent_at < CONFIRMATION_RESEND
    if not recent:
        subscriber.confirmation_sent_at = timezone.now()
        subscriber.save(update_fields=["confirmation_sent_at"])
        task = tasks.send_manage_link if confirmed else tasks.send_confirmation
        transaction.on_commit(lambda: task.delay(subscriber.pk))
    return subscriber


def subscriber_update_components(*, subscriber: Subscriber, components: list[Component]) -> None:
    """What the subscriber chose through their own signed link; none means every component."""
    subscriber.components.set(components)


def subscriber_confirm(*, subscriber: Subscriber) -> bool:
    """Returns whether this confirmed it (False: it already was)."""
    if subscriber.confirmed_at is None or subscriber.unsubscribed_at is not None:
        subscriber.confirmed_at, subscriber.unsubscribed_at = timezone.now(), None
        subscriber.save(update_fields=["confirmed_at", "unsubscribed_at"])
        return True
    return False


def subscriber_unsubscribe(*, subscriber: Subscriber) -> None:
    if subscriber.unsubscribed_at is None:
        subscriber.unsubscribed_at = timezone.now()
        subscriber.save(update_fields=["unsubscribed_at"])


def webhook_create(*, url: str, components: list[Component], created_by, allow_private: bool = False,
                   kind: str = SubscriberKind.WEBHOOK) -> Subscriber:
    """A webhook added by staff: active at once, and (only this way) allowed to reach a private address."""
    subscriber = Subscriber.objects.create(kind=kind, url=url, confirmed_at=timezone.now(),
                                           created_by=created_by, allow_private=allow_private)
    subscriber.components.set(components)
    return subscriber


@transaction.atomic
def subscriber_subscribe_url(*, kind: str, url: str, components: list[Component],
                             incident: Incident | None = None) -> Subscriber:
    """A pending webhook or Slack subscription from the public form, with the same double opt-in as
    email: the endpoint receives a confirmation link, and nothing else is sent until someone who sees
    what arrives there follows it. At most one confirmation per URL per CONFIRMATION_RESEND. The
    target passed the SSRF guard in the form and is checked again at every delivery."""
    from . import tasks

    subscriber = Subscriber.objects.filter(kind=kind, url=url, incident=incident).first()
    if subscriber is None:
        subscriber = Subscriber.objects.create(kind=kind, url=url, incident=incident)
    elif subscriber.unsubscribed_at is not None:
        subscriber.unsubscribed_at = subscriber.confirmed_at = None
        subscriber.save()
    subscriber.components.set(components)
    recent = subscriber.confirmation_sent_at and timezone.now() - subscriber.confirmation_sent_at < CONFIRMATION_RESEND
    if subscriber.confirmed_at is None and not recent:
        subscriber.confirmation_sent_at = timezone.now()
        subscriber.save(update_fields=["confirmation_sent_at"])
        transaction.on_commit(lambda: tasks.send_url_confirmation.delay(subscriber.pk))
    return subscriber
