"""Job pages: submit, follow a job's stages live (htmx polling), cancel, retry from a stage, and
the list of my jobs and of the queue."""

from datetime import timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from hub.jobs.forms import JobForm
from hub.jobs.models import Job, QuotaExceeded, Stage


def job_list(request: HttpRequest) -> HttpResponse:
    """Each job once: the user's own under "My jobs", everyone else's in the queue (or, for
    staff, among the recently finished), with the stages it is running now."""
    jobs = (
        Job.objects.select_related("base_model", "owner")
        .prefetch_related("recipes")
        .with_running_stages()
        .visible_to(request.user)
    )
    mine, others = [], jobs
    if request.user.is_authenticated:
        mine, others = jobs.filter(owner=request.user)[:50], jobs.exclude(owner=request.user)
    waiting = {
        q: Stage.objects.filter(status=Stage.Status.QUEUED, queue=q).count() for q in sorted(set(Stage.QUEUES.values()))
    }
    return render(
        request,
        "jobs/list.html",
        {
            "mine": mine,
            "queue": others.filter(status__in=Job.ACTIVE).order_by("created_at")[:100],
            "waiting": waiting,
            "recent": others.exclude(status__in=Job.ACTIVE)[:20] if request.user.is_staff else [],
        },
    )


@login_required
def job_new(request: HttpRequest) -> HttpResponse:
    initial = {"revision": "main", "suite": "quick", "benchmark_profile": "chat"}
    if request.GET.get("base"):
        initial["base"] = request.GET["base"]
    if request.GET.get("from", "").isdigit():
        earlier = get_object_or_404(Job.objects.visible_to(request.user), pk=request.GET["from"])
        initial.update(earlier.form_fields())
    form = JobForm(request.POST or None, user=request.user, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            job = form.submit()
        except QuotaExceeded as exc:
            form.add_error(None, str(exc))
            response = render(request, "jobs/new.html", {"form": form}, status=429)
            response["Retry-After"] = str(exc.retry_after)
            return response
        for note in form.notes:
            messages.info(request, note)
        messages.success(request, f"Job {job.pk} submitted.")
        return redirect("job", pk=job.pk)
    return render(request, "jobs/new.html", {"form": form})


def job_detail(request: HttpRequest, pk: int) -> HttpResponse:
    job = get_object_or_404(Job.objects.select_related("base_model", "owner").visible_to(request.user), pk=pk)
    context = stage_context(request, job)
    if request.headers.get("HX-Request"):
        return render(request, "jobs/_stages.html", context)
    return render(request, "jobs/detail.html", context)


def stage_context(request: HttpRequest, job: Job) -> dict:
    stages = list(job.stages.select_related("recipe").prefetch_related("depends_on"))
    now = timezone.now()
    typical = Stage.typical_durations(job.base_model.num_parameters)
    remaining = timedelta()
    for stage in stages:
        stage.took = stage.finished_at - stage.started_at if stage.finished_at and stage.started_at else None
        stage.elapsed = now - stage.started_at if stage.status == Stage.Status.RUNNING and stage.started_at else None
        stage.eta = stage.remaining(typical, now)
        if stage.eta is not None:
            remaining += stage.eta
        in_queue = stage.status == Stage.Status.QUEUED and stage.enqueued_at is not None
        stage.ahead = stage.ahead_in_queue() if in_queue else None
        stage.starts_in = stage.queue_wait(now) if in_queue and stage.ahead else None
        ended = stage.status in Stage.RETRYABLE
        stage.retryable = ended and stage.retry_helps
        stage.resubmit = ended and not stage.retry_helps
    active = job.status in Job.ACTIVE
    return {
        "job": job,
        "stages": stages,
        "active": active,
        "eta": remaining if active and remaining else None,
        "can_manage": job.manageable_by(request.user),
        "recipes": list(job.recipes.all()),
        "variants": list(job.variants.all()),
    }


@require_POST
def job_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    job = get_object_or_404(Job.objects.select_related("base_model", "owner").visible_to(request.user), pk=pk)
    if not job.manageable_by(request.user):
        raise PermissionDenied("only the job's owner or staff can cancel it")
    job.cancel()
    messages.success(
        request,
        f"Job {job.pk} cancelled."
        if job.status == Job.Status.CANCELLED
        else f"Job {job.pk}: cancel requested; the running stage stops at its next check.",
    )
    return redirect("job", pk=job.pk)


@require_POST
def stage_retry(request: HttpRequest, pk: int, stage_pk: int) -> HttpResponse:
    job = get_object_or_404(Job.objects.select_related("base_model", "owner").visible_to(request.user), pk=pk)
    if not job.manageable_by(request.user):
        raise PermissionDenied("only the job's owner or staff can retry it")
    stage = get_object_or_404(job.stages, pk=stage_pk)
    try:
        stage.retry(by=request.user)
        messages.success(request, f"Retrying {stage.name} and what it stopped.")
    except (ValueError, QuotaExceeded) as exc:
        messages.error(request, str(exc))
    return redirect("job", pk=job.pk)
