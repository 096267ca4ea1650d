"""Pages for people: recent builds, a repository's builds, a build's jobs, a job and its log, badges.

Pages render the current state from the database; static/js then keeps them live over websockets."""

import math
import secrets

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db.models import Max
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts import audit, permissions
from accounts.forms import ConfirmForm, RepositorySettingsForm
from accounts.services import organization_named

from . import services
from .forms import BuildActionForm
from .models import Build, Job, Repository
from .states import BuildState

HISTORY_LENGTH = 50
BRANCH_SUMMARY_LENGTH = 12
FAILURE_EXCERPTS = 10


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
    return {k: request.GET.get(k, "").strip() for k in ("repository", "branch", "state", "event")}


def _page_number(request: HttpRequest) -> int:
    try:
        return max(1, min(int(request.GET.get("page", 1)), 10_000))
    except ValueError:
        return 1


def _paged(request: HttpRequest, builds) -> dict:
    """One page of builds, newest first, with links to the neighbouring pages. No COUNT(*): one row
    more than a page tells whether there is an older page."""
    page = _page_number(request)
    start = (page - 1) * HISTORY_LENGTH
    rows = list(builds[start:start + HISTORY_LENGTH + 1])

    def url(number: int) -> str:
        query = request.GET.copy()
        query["page"] = str(number)
        if number == 1:
            del query["page"]
        return f"?{query.urlencode()}" if query else request.path

    return {
        "builds": rows[:HISTORY_LENGTH],
        "page": page,
        "newer_url": url(page - 1) if page > 1 else "",
        "older_url": url(page + 1) if len(rows) > HISTORY_LENGTH else "",
    }


def _filter_builds(builds, filters: dict[str, str]):
    if filters["repository"]:
        owner, _, name = filters["repository"].partition("/")
        builds = builds.filter(repository__owner=owner, repository__name=name)
    if filters["branch"]:
        builds = builds.filter(branch=filters["branch"])
    if filters["state"]:
        builds = builds.filter(state=filters["state"])
    if filters["event"]:
        builds = builds.filter(event=filters["event"])
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
        **_paged(request, builds),
        "filters": filters,
        "filtered": any(filters.values()),
        "states": BuildState.choices,
        "repositories": Repository.objects.visible_to(request.user).only("owner", "name"),
    }
    return render(request, "jobs/home.html", ctx)


REPOSITORY_TABS = {"branches": "Branches", "pulls": "Pull requests", "history": "Build history"}
PULL_REQUEST = "pull_request"


def _latest_per_branch(builds) -> list[Build]:
    """The newest build of each branch, for the branch and pull-request tabs."""
    latest = builds.values("branch").annotate(top=Max("number")).order_by("-top")[:BRANCH_SUMMARY_LENGTH]
    return sorted(builds.filter(number__in=[row["top"] for row in latest]), key=lambda b: -b.number)


@require_GET
def repository_detail(request: HttpRequest, owner: str, name: str) -> HttpResponse:
    """A repository's builds in three tabs, as other CI products show them: the latest build of each
    branch (pushes), of each pull request, and the whole history."""
    repo = _get_repository_for_user(request, owner, name)
    tab = request.GET.get("tab", "branches")
    if tab not in REPOSITORY_TABS:
        raise Http404("No such tab")
    builds = repo.builds.select_related("repository")
    ctx = {"repository": repo, "tab": tab, "tabs": REPOSITORY_TABS,
           "filters": {"repository": repo.slug, "branch": "", "state": "", "event": ""},
           "can_admin": permissions.can_admin_repository(request.user, repo)}
    if tab == "history":
        ctx.update(_paged(request, builds))
    else:
        pulls = tab == "pulls"
        chosen = builds.filter(event=PULL_REQUEST) if pulls else builds.exclude(event=PULL_REQUEST)
        ctx["branches"] = _latest_per_branch(chosen)
        ctx["filters"]["event"] = PULL_REQUEST if pulls else ""
    return render(request, "jobs/repository.html", ctx)


@require_GET
def build_detail(request: HttpRequest, build_id: int) -> HttpResponse:
    build = _get_build_for_user(request, build_id)
    jobs = list(build.jobs.order_by("id"))
    # A failing build shows where each failed job failed, without a click (the first few in full: each
    # excerpt reads that job's log).
    failed = [j for j in jobs if j.is_failure]
    failures = [{"job": j, "excerpt": j.failure_excerpt()} for j in failed[:FAILURE_EXCERPTS]]
    ctx = {
        "build": build,
        "jobs": jobs,
        "failures": failures,
        "more_failures": failed[FAILURE_EXCERPTS:],
        "can_act": permissions.can_operate(request.user, build.repository),
        "restarted": sum(1 for j in jobs if j.attempt > 1),
        "any_active": any(not j.is_finished for j in jobs),
        "any_finished": any(j.is_finished for j in jobs),
        "any_failed": any(j.state in services.RESTARTABLE_FAILURES for j in jobs),
    }
    return render(request, "jobs/build.html", ctx)


@require_POST
def build_action(request: HttpRequest, build_id: int) -> HttpResponse:
    """Restart the whole build, only its failed jobs, or cancel it."""
    build = _get_build_for_user(request, build_id)
    _require_operate(request, build.repository)
    form = BuildActionForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Unknown action.")
        return redirect(build)
    action = form.cleaned_data["action"]
    if action == "cancel":
        n = services.build_cancel(build=build, actor=request.user)
        done = f"Asked {n} running job{pluralize(n)} to stop." if n else "No job was running."
    else:
        n = services.build_restart(build=build, only_failed=action == "restart_failed", actor=request.user)
        what = "failed job" if action == "restart_failed" else "job"
        done = f"Restarted {n} {what}{pluralize(n)}." if n else f"No finished {what} to restart."
    (messages.success if n else messages.info)(request, done)
    return redirect(build)


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
    try:
        attempt = int(request.GET.get("attempt", job.attempt))
    except ValueError:
        attempt = job.attempt
    if not 1 <= attempt <= job.attempt:
        raise Http404("No such attempt")
    ctx = {
        "job": job,
        "build": job.build,
        "attempt": attempt,
        "attempts": range(job.attempt, 0, -1),
        "current_attempt": attempt == job.attempt,
        "can_act": permissions.can_operate(request.user, job.build.repository),
        "siblings": job.build.jobs.order_by("id").only("id", "number", "state", "cancel_requested", "attempt"),
        "error_pattern": job.build.repository.log_error_pattern,
        "log_unavailable": _log_unavailable(job, attempt),
    }
    return render(request, "jobs/job.html", ctx)


def _log_unavailable(job: Job, attempt: int) -> str:
    """Why an archived log cannot be shown (expired, object missing or corrupt); empty when it can."""
    from . import archive

    found = archive.archive_for(job, attempt) if attempt < job.attempt or job.is_finished else None
    if found is None:
        return ""
    if found.expired_at:
        return f"This log was deleted on {found.expired_at:%Y-%m-%d %H:%M} UTC: it was older than the " \
               f"repository's log retention ({archive.retention_days(job.build.repository)} days)."
    try:
        archive.Reader(found).close()
    except archive.LogUnavailable as e:
        return f"{e.message[:1].upper()}{e.message[1:]}. Staff have been told."
    return ""


@require_POST
def job_cancel(request: HttpRequest, job_id: int) -> HttpResponse:
    job = _get_job_for_user(request, job_id)
    _require_operate(request, job.build.repository)
    if services.job_cancel(job=job, actor=request.user):
        messages.success(request, f"Asked job {job.number} to stop.")
    else:  # already finished: nothing to cancel
        messages.info(request, f"Job {job.number} had already finished.")
    return redirect(job)


@require_POST
def job_restart(request: HttpRequest, job_id: int) -> HttpResponse:
    job = _get_job_for_user(request, job_id)
    _require_operate(request, job.build.repository)
    if services.job_restart(job=job, actor=request.user):
        messages.success(request, f"Job {job.number} restarted: attempt {job.attempt}.")
    else:  # still running: the page shows it, with a cancel button instead
        messages.info(request, f"Job {job.number} is still running; cancel it first.")
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
