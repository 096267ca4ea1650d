"""The Django admin lists every model of the jobs, fleet and accounts apps for superusers."""

import pytest
from django.contrib import admin
from django.urls import reverse

from accounts import models as accounts_models
from fleet import models as fleet_models
from jobs import models


@pytest.mark.django_db
def test_every_jobs_fleet_and_accounts_model_has_a_working_admin_list(admin_client, make_build):
    make_build()
    registered = [m for m in admin.site._registry if m._meta.app_label in ("jobs", "fleet", "accounts")]
    assert {models.Job, accounts_models.ApiToken, fleet_models.Worker, fleet_models.Alert} <= set(registered)
    for model in registered:
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        assert admin_client.get(url).status_code == 200, url
