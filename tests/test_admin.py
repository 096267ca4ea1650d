"""The Django admin lists every model of the jobs app for superusers."""

import pytest
from django.contrib import admin
from django.urls import reverse

from jobs import models


@pytest.mark.django_db
def test_every_jobs_model_has_a_working_admin_list(admin_client, make_build):
    make_build()
    registered = [m for m in admin.site._registry if m._meta.app_label == "jobs"]
    assert {models.Job, models.Worker, models.Alert, models.ApiToken} <= set(registered)
    for model in registered:
        url = reverse(f"admin:jobs_{model._meta.model_name}_changelist")
        assert admin_client.get(url).status_code == 200, url
