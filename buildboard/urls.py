from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

# The auth views put the request's host in `site_name` (there is no Sites framework here); the pages
# should name the site.
SITE = {"site_name": settings.SITE_NAME}

urlpatterns = [
    path("admin/", admin.site.urls),
    path("login/", auth_views.LoginView.as_view(extra_context=SITE), name="login"),
    path("logout/", auth_views.LogoutView.as_view(extra_context=SITE), name="logout"),
    path("", include("accounts.urls")),
    path("status/", include("incidents.urls")),
    path("api/v2/", include("incidents.api_urls")),
    path("", include("fleet.urls")),  # before jobs: its <owner>/<repo>/ pattern would take /alerts/rules/
    path("", include("jobs.urls")),
]

if settings.OIDC_ENABLED:  # single sign-on routes exist only where a provider is configured
    urlpatterns.insert(3, path("oidc/", include("mozilla_django_oidc.urls")))
# Errors are JSON under /api/, and a transient failure (database or Redis out of reach) is a 503.
handler400 = "buildboard.lib.errors.bad_request"
handler403 = "buildboard.lib.errors.permission_denied"
handler404 = "buildboard.lib.errors.not_found"
handler500 = "buildboard.lib.errors.server_error"
