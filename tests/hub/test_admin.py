import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.urls import reverse

from hub.catalog.models import BaseModel
from hub.jobs.models import Job, Recipe, Stage


@pytest.fixture
def staff_client(client, db):
    client.force_login(User.objects.create_superuser("root", "", "pw"))
    return client


def test_it_lists_every_model_in_the_admin(staff_client):
    for model in admin.site._registry:
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        assert staff_client.get(url).status_code == 200, url


def test_it_shows_a_jobs_stages_and_their_errors(staff_client):
    base = BaseModel.objects.create(name="tiny", status=BaseModel.Status.READY)
    job = Job.submit(base_model=base, recipes=[Recipe.for_preset("w4a16")])
    Stage.objects.filter(job=job, kind="fetch").update(status=Stage.Status.FAILED, message="no such repository")
    page = staff_client.get(reverse("admin:jobs_job_change", args=[job.pk])).content.decode()
    for name in ("fetch", "baseline", "compress", "validate", "benchmark", "publish", "no such repository"):
        assert name in page
    filtered = staff_client.get(reverse("admin:jobs_stage_changelist") + "?status__exact=failed&q=repository")
    assert "no such repository" in filtered.content.decode()


def test_it_cancels_jobs_from_the_admin(staff_client):
    base = BaseModel.objects.create(name="tiny", status=BaseModel.Status.READY)
    job = Job.submit(base_model=base, recipes=[Recipe.for_preset("w4a16")])
    staff_client.post(reverse("admin:jobs_job_changelist"), {"action": "cancel_jobs", "_selected_action": [job.pk]})
    assert Job.objects.get(pk=job.pk).status == Job.Status.CANCELLED
