"""Pages for people: recent builds, a repository's builds, a build's jobs, a job and its log, badges.

Pages render the current state from the database; static/js then keeps them live over websockets."""

import math
import secrets

from django.core.exceptions import PermissionDenied
from django.db.models import Max
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts import audit, permissions
from accounts.forms import ConfirmForm, RepositorySettingsForm
from accounts.services import organization_named

from . import services
from .models import Build, Job, Repository
from .states import BuildState

HISTORY_LENGTH = 50
BRANCH_SUMMARY_LENGTH = 12


def _get_build_for_user(request: HttpRequest, build_id: int) -> Build:
    return get_object_or_404(Build.objects.visible_to(request.user).select_related("repository"), pk=build_id)


def _get_job_for_user(request: HttpRequest, job_id: int) -> Job:
    return get_object_or_404(Job.objects.visible_to(request.user).select_related("build__repository"), pk=job_id)


def _get_repository_for_user(request: HttpRequest, owner: str, name: str) -> Repository:
    repo = Repository.objects.visible_to(request.user).filter(owner=owner, name=name).first()
    if repo is None:
        raise Http404("No such repository")
    return repo


def _build_filters(request: HttpRequest) -> dict[str, str]:
    return {k: request.GET.get(k, "").strip() for k in ("repository", "branch", "state")}


def _filter_builds(builds, filters: dict[str, str]):
    if filters["repository"]:
        owner, _, name = filters["repository"].partition("/")
        builds = builds.filter(repository__owner=owner, repository__name=name)
    if filters["branch"]:
        builds = builds.filter(branch=filters["branch"])
    if filters["state"]:
        builds = builds.filter(state=filters["state"])
    return builds


def _require_operate(request: HttpRequest, repository: Repository) -> None:
    """Cancel and restart need the operate role (staff read everything but operate only where granted)."""
    if not permissions.can_operate(request.user, repository):
        raise PermissionDenied("Cancelling and restarting need the operate role on this repository.")


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    filters = _build_filters(request)
    builds = _filter_builds(Build.objects.visible_to(request.user).select_related("repository"), filters)
    ctx = {
        "builds": builds[:HISTORY_LENGTH],
        "filters": filters,
        "states": BuildState.choices,
        "repositories": Repository.objects.visible_to(request.user).only("owner", "name"),
    }
    return render(request, "jobs/home.html", ctx)


@require_GET
def repository_detail(request: HttpRequest, owner: str, name: str) -> HttpResponse:
    repo = _get_repository_for_user(request, owner, name)
    builds = repo.builds.select_related("repository")
    latest = (repo.builds.values("branch").annotate(top=Max("number")).order_by("-top")[:BRANCH_SUMMARY_LENGTH])
    tops = [row["top"] for row in latest]
    branches = sorted(builds.filter(number__in=tops), key=lambda b: -b.number)
    ctx = {
        "repository": repo,
        "builds": builds[:HISTORY_LENGTH],
        "branches": branches,
        "filters": {"repository": repo.slug, "branch": "", "state": ""},
        "can_admin": permissions.can_admin_repository(request.user, repo),
    }
    return render(request, "jobs/repository.html", ctx)


@require_GET
def build_detail(request: HttpRequest, build_id: int) -> HttpResponse:
    build = _get_build_for_user(request, build_id)
    ctx = {"build": build, "jobs": build.jobs.order_by("id")}
    return render(request, "jobs/build.html", ctx)


@require_GET
def build_row(request: HttpRequest, build_id: int) -> HttpResponse:
    """One table row, for dashboards adding a new build live; 204 when it does not match the filters."""
    build = _get_build_for_user(request, build_id)
    if not _filter_builds(Build.objects.filter(pk=build.pk), _build_filters(request)).exists():
        return HttpResponse(status=204)
    return render(request, "jobs/_build_row.html", {"b": build})


@require_GET
def job_detail(request: HttpRequest, job_id: int) -> HttpResponse:
    job = _get_job_for_user(request, job_id)
    ctx = {
        "job": job,
        "build": job.build,
        "can_act": permissions.can_operate(request.user, job.build.repository),
        "siblings": job.build.jobs.order_by("id").only("id", "number", "state", "cancel_requested"),
    }
    return render(request, "jobs/job.html", ctx)


@require_POST
def job_cancel(request: HttpRequest, job_id: int) -> HttpResponse:
    job = _get_job_for_user(request, job_id)
    _require_operate(request, job.build.repository)
    services.job_cancel(job=job, actor=request.user)  # already finished: nothing to cancel, the page shows the state
    return redirect(job)


@require_POST
def job_restart(request: HttpRequest, job_id: int) -> HttpResponse:
    job = _get_job_for_user(request, job_id)
    _require_operate(request, job.build.repository)
    services.job_restart(job=job, actor=request.user)  # still running: the page shows it, with a cancel button instead
    return redirect(job)


# Badge words for build states, and their colours (shields.io's palette, readable on white and dark).
BADGE_STATUS = {
    BuildState.PASSED: ("passing", "#2e8540"),
    BuildState.FAILED: ("failing", "#c9302c"),
    BuildState.ERRORED: ("error", "#b35900"),
    BuildState.CANCELED: ("canceled", "#6b7280"),
    BuildState.CREATED: ("pending", "#a67c00"),
    BuildState.RUNNING: ("pending", "#a67c00"),
}
BADGE_UNKNOWN = ("unknown", "#6b7280")
BADGE_MAX_AGE = 60


def _text_width(text: str) -> int:
    """An estimate of Verdana 11px text width, close enough for badge boxes."""
    return math.ceil(sum(7 if c in "mwMW" else 4 if c in "fijlrt.,:;' " else 6.5 for c in text)) + 10


@require_GET
def badge(request: HttpRequest, owner: str, name: str) -> HttpResponse:
    """A build badge; a private repository's is reachable with its badge token (`?token=`) as well."""
    repo = Repository.objects.filter(owner=owner, name=name).first()
    given = request.GET.get("token", "")
    if repo is None or not (repo.visible_to(request.user)
                            or (given and secrets.compare_digest(given, repo.badge_token))):
        raise Http404("No such repository")
    builds = repo.builds.all()
    if request.GET.get("branch"):
        builds = builds.filter(branch=request.GET["branch"])
    latest = builds.order_by("-number").only("state").first()
    status, colour = BADGE_STATUS.get(latest.state, BADGE_UNKNOWN) if latest else BADGE_UNKNOWN
    etag = f'"{status}"'
    cache = f"public, max-age={BADGE_MAX_AGE}" if not repo.private else "private, no-store"
    if request.headers.get("If-None-Match") == etag and not repo.private:
        response = HttpResponse(status=304)
    else:
        label = "build"
        ctx = {"label": label, "status": status, "colour": colour,
               "label_width": _text_width(label), "status_width": _text_width(status)}
        ctx["width"] = ctx["label_width"] + ctx["status_width"]
        ctx["label_x"] = ctx["label_width"] / 2
        ctx["status_x"] = ctx["label_width"] + ctx["status_width"] / 2
        response = render(request, "jobs/badge.svg", ctx, content_type="image/svg+xml; charset=utf-8")
    response["Cache-Control"] = cache
    response["ETag"] = etag
    return response


@require_http_methods(["GET", "POST"])
def repository_settings(request: HttpRequest, owner: str, name: str) -> HttpResponse:
    """Repository admins: privacy, the badge token, and who holds which role on this repository."""
    repo = _get_repository_for_user(request, owner, name)
    if not permissions.can_admin_repository(request.user, repo):
        raise PermissionDenied("Only this repository's admins can change its settings.")
    if request.method == "POST":
        if "rotate_badge_token" in request.POST:
            if ConfirmForm(request.POST).is_valid():
                repo.rotate_badge_token()
                audit.record(request.user, "badge.rotate", organization=repo.owner, target=repo.slug)
        else:
            form = RepositorySettingsForm(request.POST)
            if form.is_valid() and form.cleaned_data["private"] != repo.private:
                repo.private = form.cleaned_data["private"]
                repo.save(update_fields=["private"])
                audit.record(request.user, "repository.private" if repo.private else "repository.public",
                             organization=repo.owner, target=repo.slug)
        return redirect("jobs-repository-settings", repo.owner, repo.name)
    org = organization_named(repo.owner)
    ctx = {
        "repository": repo,
        "form": RepositorySettingsForm(initial={"private": repo.private}),
        "grants": org.grants.filter(repository=repo.name).select_related("user", "team"),
        "org": org,
        "badge_url": request.build_absolute_uri(reverse("jobs-badge", args=[repo.owner, repo.name]))
        + (f"?token={repo.badge_token}" if repo.private else ""),
    }
    return render(request, "jobs/repository_settings.html", ctx)
