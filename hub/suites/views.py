"""Suite pages: the suites a visitor may read, one suite's tasks and files, the upload form and
the owner's delete."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from hub.jobs.presets import SUITES
from hub.suites.definition import SuiteRefused, read_uploads
from hub.suites.forms import SuiteUploadForm
from hub.suites.models import Suite
from hub.suites.store import get


def suite_list(request: HttpRequest) -> HttpResponse:
    suites = (
        Suite.objects.visible_to(request.user).select_related("owner").order_by("owner__username", "name", "-version")
    )
    page = Paginator(suites, 50).get_page(request.GET.get("page"))
    return render(request, "suites/list.html", {"page": page, "builtin": SUITES})


def suite_detail(request: HttpRequest, pk: int) -> HttpResponse:
    suite = get_object_or_404(Suite.objects.visible_to(request.user).select_related("owner"), pk=pk)
    # the YAML files as uploaded, shown as text (the page escapes it); data files by size only
    yaml_files = [
        {**f, "text": get(f["sha256"]).decode("utf-8", "replace")}
        for f in suite.files
        if f["name"].endswith((".yaml", ".yml"))
    ]
    return render(
        request,
        "suites/detail.html",
        {
            "suite": suite,
            "yaml_files": yaml_files,
            "used": suite.used,
            "can_manage": Suite.objects.manageable_by(request.user).filter(pk=suite.pk).exists(),
        },
    )


@login_required
def suite_new(request: HttpRequest) -> HttpResponse:
    form = SuiteUploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        try:
            name, files = read_uploads(form.cleaned_data["suite"], form.cleaned_data["files"])
            suite, created = Suite.upload(
                request.user, name, files, form.cleaned_data["private"], form.cleaned_data["replace"]
            )
        except SuiteRefused as exc:
            form.add_error(None, str(exc))
        else:
            if created:
                messages.success(request, f"Suite {suite.reference} uploaded.")
            else:
                messages.info(request, f"{suite.reference} is identical: nothing new was stored.")
            return redirect("suite", pk=suite.pk)
    return render(request, "suites/new.html", {"form": form})


@require_POST
def suite_delete(request: HttpRequest, pk: int) -> HttpResponse:
    suite = get_object_or_404(Suite.objects.visible_to(request.user).select_related("owner"), pk=pk)
    if not Suite.objects.manageable_by(request.user).filter(pk=suite.pk).exists():
        raise PermissionDenied("only the suite's owner or staff can delete it")
    try:
        suite.delete_unused()
    except SuiteRefused as exc:
        messages.error(request, str(exc))
        return redirect("suite", pk=suite.pk)
    messages.success(request, f"Suite {suite.reference} deleted.")
    return redirect("suites")
