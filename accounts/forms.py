"""Every browser POST of the accounts pages goes through one of these forms."""

from datetime import timedelta

from django import forms
from django.utils import timezone

from .models import NAME, Role

EXPIRY_CHOICES = [("", "never"), ("7", "in 7 days"), ("30", "in 30 days"), ("90", "in 90 days"),
                  ("365", "in a year")]


def _name_field(label: str) -> forms.RegexField:
    return forms.RegexField(regex=NAME, max_length=100, label=label,
                            error_messages={"invalid": "Use 1-100 letters, digits, _ . or -."})


class OrganizationForm(forms.Form):
    name = _name_field("Organization")
    new_repositories_private = forms.BooleanField(required=False, initial=True,
                                                  label="New repositories start private")


class GrantForm(forms.Form):
    username = forms.CharField(max_length=150, required=False, label="User")
    team = forms.CharField(max_length=100, required=False, label="or team")
    repository = forms.RegexField(regex=NAME, max_length=100, required=False,
                                  label="Repository (empty: the whole organization)")
    role = forms.ChoiceField(choices=Role.choices)

    def clean(self):
        data = super().clean()
        if bool(data.get("username")) == bool(data.get("team")):
            raise forms.ValidationError("Name either a user or a team.")
        return data


class RevokeForm(forms.Form):
    grant = forms.IntegerField(min_value=1)


class MemberForm(forms.Form):
    username = forms.CharField(max_length=150)


class TeamForm(forms.Form):
    name = _name_field("Team")


class TeamSettingsForm(forms.Form):
    sso_groups = forms.CharField(max_length=500, required=False, label="Single sign-on groups (comma-separated)")


class TeamMemberForm(forms.Form):
    username = forms.CharField(max_length=150)
    action = forms.ChoiceField(choices=[("add", "add"), ("remove", "remove")])


class _TokenForm(forms.Form):
    name = forms.CharField(max_length=100)
    expires = forms.ChoiceField(choices=EXPIRY_CHOICES, required=False)

    def expires_at(self):
        days = self.cleaned_data.get("expires")
        return timezone.now() + timedelta(days=int(days)) if days else None


def _words(value: str) -> list[str]:
    return [w for w in value.replace(",", " ").split() if w]


class PersonalTokenForm(_TokenForm):
    pass


class BuildTokenForm(_TokenForm):
    repositories = forms.CharField(max_length=2000, required=False,
                                   help_text="Repository names of this organization, separated by spaces; "
                                             "empty: the whole organization.")

    def repository_names(self) -> list[str]:
        return _words(self.cleaned_data.get("repositories", ""))


class WorkerTokenForm(_TokenForm):
    queues = forms.CharField(max_length=2000, help_text="Queues, separated by spaces.")

    def queue_names(self) -> list[str]:
        return _words(self.cleaned_data["queues"])


class RepositorySettingsForm(forms.Form):
    private = forms.BooleanField(required=False, label="Private: only people with a role (and staff) see it")


class ConfirmForm(forms.Form):
    """An empty form, so that a button-only POST goes through a form and its CSRF check like the rest."""
