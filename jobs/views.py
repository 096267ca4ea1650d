"""Pages for people: recent builds, a repository's builds, a build's jobs, a job and its log."""

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from .models import Build, Job, Repository


def _get_build_for_user(request: HttpRequest, build_id: int) -> Build:
    return get_object_or_404(Build.objects.visible_to(request.user).select_related("repository"), pk=build_id)


def _get_job_for_user(request: HttpRequest, job_id: int) -> Job:
    return get_object_or_404(Job.objects.visible_to(request.user).select_related("build__repository"), pk=job_id)


def home(request: HttpRequest) -> HttpResponse:
    builds = Build.objects.visible_to(request.user).select_related("repository")
    filters = {k: request.GET.get(k, "").strip() for k in ("repository", "branch", "state")}
    if filters["repository"] and "/" in filters["repository"]:
        owner, name = filters["repository"].split("/", 1)
        builds = builds.filter(repository__owner=owner, repository__name=name)
    if filters["branch"]:
        builds = builds.filter(branch=filters["branch"])
    if filters["state"]:
        builds = builds.filter(state=filters["state"])
    ctx = {"builds": builds[:50], "filters": filters}
    return render(request, "jobs/home.html", ctx)


def repository_detail(request: HttpRequest, owner: str, name: str) -> HttpResponse:
    repo = Repository.objects.visible_to(request.user).filter(owner=owner, name=name).first()
    if repo is None:
        raise Http404("No such repository")
    ctx = {"repository": repo, "builds": repo.builds.select_related("repository")[:50]}
    return render(request, "jobs/repository.html", ctx)


def build_detail(request: HttpRequest, build_id: int) -> HttpResponse:
    build = _get_build_for_user(request, build_id)
    ctx = {"build": build, "jobs": build.jobs.order_by("id")}
    return render(request, "jobs/build.html", ctx)


def job_detail(request: HttpRequest, job_id: int) -> HttpResponse:
    job = _get_job_for_user(request, job_id)
    ctx = {"job": job, "build": job.build, "log": job.log_text()}
    return render(request, "jobs/job.html", ctx)
