"""A job runs to done on a real worker process, whose publish stage reaches the live hub at
HUB_SITE_URL over HTTP, as a deployed worker reaches the web server."""

import pytest
from huggingface_hub import HfApi

from hub.api.models import ApiToken
from hub.catalog.models import Publication, Variant
from hub.jobs.models import Job
from tests.helpers import submit_on_stories260k, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.services]


def test_it_publishes_from_a_worker_process(hub_url, alice, start_worker, stories260k, fixtures_dir, settings):  # noqa: F811
    job = submit_on_stories260k(stories260k, owner=alice)
    start_worker(
        "publish@localhost",
        HUB_SITE_URL=hub_url,
        HUB_CALIBRATION_DATASET=str(fixtures_dir / "datasets" / "wikitext2_raw" / "test.txt"),
        HUB_CALIBRATION_SAMPLES="4",
        HUB_CALIBRATION_SEQ_LEN="64",
    )
    wait_for(lambda: Job.objects.get(pk=job.pk).status in ("done", "failed"), 300, "the job to end")
    assert Job.objects.get(pk=job.pk).status == "done", list(job.stages.values_list("kind", "status", "error"))

    variant = Variant.objects.get(job=job)
    publication = Publication.objects.get(variant=variant)
    assert (publication.endpoint, publication.repo_id) == ("local", "alice/stories260k-w8a8-int8")
    remote = {
        f.path: f for f in HfApi(endpoint=hub_url).list_repo_tree(publication.repo_id, revision=publication.commit_sha)
    }
    for entry in variant.files:
        got = remote[entry["path"]]
        assert got.size == entry["size"] and (got.lfs is None or got.lfs.sha256 == entry["sha256"])
    # the system user's token lived as long as the upload
    tokens = ApiToken.objects.filter(user__username=settings.PUBLISH_USER)
    assert tokens.count() == 1 and tokens.get().revoked_at is not None
