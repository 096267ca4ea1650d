"""Forms of the staff UI and of the public subscription page."""

from datetime import UTC, datetime

from django import forms

from buildboard.lib import ssrf

from .models import (
    UPDATE_STATUSES,
    Component,
    ComponentGroup,
    ComponentStatus,
    Impact,
    Incident,
    IncidentTemplate,
    MaintenanceStatus,
    SubscriberKind,
)

UNCHANGED = ""


class UTCDateTimeField(forms.DateTimeField):
    """A datetime-local input read as UTC, whatever the server's time zone (the page says UTC)."""

    widget = forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")

    def to_python(self, value):
        result = super().to_python(value)
        if result is not None:
            result = result.replace(tzinfo=UTC) if result.tzinfo is None else result
        return result

    def prepare_value(self, value):
        if isinstance(value, datetime):
            return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")
        return value


class ComponentStatusesMixin:
    """One select per component, named component-<code>; empty means 'not affected / unchanged'."""

    blank_label = "Not affected"

    def add_component_fields(self, initial: dict[str, str] | None = None) -> None:
        from .api import page_order

        self.components = sorted(Component.objects.select_related("group"), key=page_order)
        for c in self.components:
            label = f"{c.group.name} / {c.name}" if c.group else c.name
            self.fields[f"component-{c.code}"] = forms.ChoiceField(
                label=label, required=False, initial=(initial or {}).get(c.code, UNCHANGED),
                choices=[(UNCHANGED, f"{self.blank_label} ({c.get_status_display().lower()})"),
                         *ComponentStatus.choices])

    def component_fields(self) -> list:
        return [self[f"component-{c.code}"] for c in self.components]

    def component_statuses(self) -> dict[Component, str]:
        return {c: self.cleaned_data[f"component-{c.code}"] for c in self.components
                if self.cleaned_data.get(f"component-{c.code}")}


class IncidentOpenForm(ComponentStatusesMixin, forms.Form):
    name = forms.CharField(label="Title", max_length=200)
    status = forms.ChoiceField(choices=UPDATE_STATUSES)
    impact = forms.ChoiceField(choices=Impact.choices, initial=Impact.MINOR)
    message = forms.CharField(widget=forms.Textarea(attrs={"rows": 6}), help_text="Markdown.")
    display_at = UTCDateTimeField(label="Time (UTC)", required=False, help_text="Leave empty for now.")
    notify = forms.BooleanField(label="Notify subscribers", required=False, initial=True)

    def __init__(self, *args, component_initial: dict[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_component_fields(component_initial)


class IncidentUpdateForm(ComponentStatusesMixin, forms.Form):
    blank_label = "Unchanged"

    status = forms.ChoiceField(choices=UPDATE_STATUSES)
    message = forms.CharField(widget=forms.Textarea(attrs={"rows": 5}), help_text="Markdown.")
    impact = forms.ChoiceField(choices=[("", "Unchanged"), *Impact.choices], required=False)
    display_at = UTCDateTimeField(label="Time (UTC)", required=False, help_text="Leave empty for now.")
    # As on Statuspage: resolving brings back what the incident took down, unless staff say otherwise.
    restore_components = forms.BooleanField(
        label="Return the affected components to operational", required=False, initial=True,
        help_text="When resolving: every affected component left on “Unchanged” becomes operational.")
    notify = forms.BooleanField(label="Notify subscribers", required=False, initial=True)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_component_fields()


class PostmortemForm(forms.Form):
    body = forms.CharField(widget=forms.Textarea(attrs={"rows": 18}), help_text="Markdown.")
    notify = forms.BooleanField(label="Notify subscribers when publishing", required=False, initial=True)


class MaintenanceForm(forms.Form):
    name = forms.CharField(label="Title", max_length=200)
    scheduled_for = UTCDateTimeField(label="Starts (UTC)")
    scheduled_until = UTCDateTimeField(label="Ends (UTC)")
    message = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), help_text="Markdown.")
    components = forms.ModelMultipleChoiceField(Component.objects.all(), required=False,
                                                widget=forms.CheckboxSelectMultiple)
    auto_transition = forms.BooleanField(label="Start and complete automatically", required=False, initial=True)
    notify = forms.BooleanField(label="Notify subscribers", required=False, initial=True)

    def clean(self):
        data = super().clean()
        start, end = data.get("scheduled_for"), data.get("scheduled_until")
        if start and end and end <= start:
            self.add_error("scheduled_until", "The end must be after the start.")
        return data


class MaintenanceUpdateForm(forms.Form):
    status = forms.ChoiceField(choices=MaintenanceStatus.choices)
    message = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), help_text="Markdown.")
    notify = forms.BooleanField(label="Notify subscribers", required=False, initial=True)


class ComponentForm(forms.ModelForm):
    class Meta:
        model = Component
        fields = ["name", "description", "group", "position", "show_uptime", "only_show_if_degraded", "queues",
                  "start_date"]
        widgets = {"description": forms.Textarea(attrs={"rows": 2}),
                   "start_date": forms.DateInput(attrs={"type": "date"})}


class ComponentGroupForm(forms.ModelForm):
    class Meta:
        model = ComponentGroup
        fields = ["name", "description", "position"]
        widgets = {"description": forms.Textarea(attrs={"rows": 2})}


class ComponentStatusForm(forms.Form):
    status = forms.ChoiceField(choices=ComponentStatus.choices)


class IncidentTemplateForm(forms.ModelForm):
    class Meta:
        model = IncidentTemplate
        fields = ["name", "title", "status", "impact", "body", "components"]
        widgets = {"body": forms.Textarea(attrs={"rows": 4}), "components": forms.CheckboxSelectMultiple}


class WebhookForm(forms.Form):
    kind = forms.ChoiceField(label="Kind", choices=[(SubscriberKind.WEBHOOK, "Webhook (signed JSON)"),
                                                    (SubscriberKind.SLACK, "Slack incoming webhook")])
    url = forms.URLField(label="URL", max_length=500, assume_scheme="https")
    components = forms.ModelMultipleChoiceField(Component.objects.all(), required=False,
                                                widget=forms.CheckboxSelectMultiple,
                                                help_text="None selected means every component.")
    allow_private = forms.BooleanField(
        label="Allow a loopback, private or link-local address", required=False,
        help_text="Only for a receiver inside your own network; public subscriptions never may.")

    def clean(self):
        data = super().clean()
        if data.get("url"):
            try:
                ssrf.resolve(data["url"], allow_private=data.get("allow_private", False))
            except ssrf.UnsafeURL as e:
                self.add_error("url", str(e))
        return data


class _IncidentChoice(forms.Form):
    """An optional hidden incident code: subscribe to that incident's updates only."""

    incident = forms.CharField(required=False, widget=forms.HiddenInput, max_length=12)

    def clean_incident(self) -> Incident | None:
        code = self.cleaned_data["incident"]
        if not code:
            return None
        incident = Incident.objects.public().filter(code=code).first()
        if incident is None:
            raise forms.ValidationError("That incident does not exist.")
        return incident


class SubscribeForm(_IncidentChoice):
    email = forms.EmailField()
    components = forms.ModelMultipleChoiceField(Component.objects.all(), required=False,
                                                widget=forms.CheckboxSelectMultiple,
                                                help_text="None selected means every component.")


class UrlSubscribeForm(_IncidentChoice):
    """A webhook or Slack subscription anyone can ask for; its URL must reach a public address."""

    kind = forms.ChoiceField(label="Send to", widget=forms.RadioSelect, initial=SubscriberKind.WEBHOOK,
                             choices=[(SubscriberKind.WEBHOOK, "A webhook (signed JSON)"),
                                      (SubscriberKind.SLACK, "A Slack channel (incoming webhook)")])
    url = forms.URLField(label="URL", max_length=500, assume_scheme="https",
                         help_text="It receives a confirmation link first; nothing else is sent until it is followed.")
    components = forms.ModelMultipleChoiceField(Component.objects.all(), required=False,
                                                widget=forms.CheckboxSelectMultiple,
                                                help_text="None selected means every component.")

    def clean(self):
        data = super().clean()
        url = data.get("url")
        if not url:
            return data
        if data.get("kind") == SubscriberKind.SLACK and not url.startswith("https://"):
            self.add_error("url", "A Slack incoming webhook URL starts with https://.")
            return data
        try:
            ssrf.resolve(url)
        except ssrf.UnsafeURL as e:
            self.add_error("url", str(e))
        return data


class SubscriptionComponentsForm(forms.Form):
    components = forms.ModelMultipleChoiceField(Component.objects.all(), required=False,
                                                widget=forms.CheckboxSelectMultiple,
                                                help_text="None selected means every component.")
