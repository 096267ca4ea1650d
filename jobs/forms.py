"""Forms behind the buttons on build and job pages (each POST goes through one, CSRF-checked)."""

from django import forms

BUILD_ACTIONS = [
    ("restart", "Restart build"),
    ("restart_failed", "Restart failed jobs"),
    ("cancel", "Cancel build"),
]


class BuildActionForm(forms.Form):
    action = forms.ChoiceField(choices=BUILD_ACTIONS)
