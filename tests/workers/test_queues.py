"""Short stages do not wait behind long ones: with a worker per queue, as `make run` and the
production layout start them, a job's fetch runs while another job's compress holds the GPU
queue."""

import re
from pathlib import Path

import pytest
from django.core.management import call_command

from hub.catalog.models import BaseModel
from hub.jobs.models import Stage
from tests.helpers import submit_job, wait_for, write_tiny_checkpoint

pytestmark = [pytest.mark.services, pytest.mark.slow]
S = Stage.Status
ROOT = Path(__file__).resolve().parents[2]


def test_it_starts_a_worker_per_queue_in_make_run():
    run = re.search(r"^run:.*?(?=^\S)", (ROOT / "Makefile").read_text(), re.S | re.M).group(0)
    assert sorted(re.findall(r"celery -A workers worker .*?-Q (\S+)", run)) == ["cpu", "gpu"]


def test_it_runs_a_short_jobs_fetch_while_a_long_compress_holds_the_gpu_queue(
    start_worker, stories260k, fixtures_dir, tmp_path
):
    call_command("import_model", str(stories260k))
    long = submit_job(BaseModel.objects.get(name="stories260k"))
    start_worker("cpu@localhost", queues="cpu")
    start_worker(  # enough calibration data that compress runs for tens of seconds
        "gpu@localhost",
        queues="gpu",
        HUB_CALIBRATION_DATASET=str(fixtures_dir / "datasets" / "wikitext2_raw" / "test.txt"),
        HUB_CALIBRATION_SAMPLES="512",
        HUB_CALIBRATION_SEQ_LEN="256",
    )
    compress = long.stages.get(kind="compress")
    wait_for(lambda: Stage.objects.get(pk=compress.pk).status == S.RUNNING, 120, "the long compress to run")

    source = write_tiny_checkpoint(tmp_path / "tiny")
    short = submit_job(
        BaseModel.objects.create(name="org/tiny", source_path=str(source), architecture="LlamaForCausalLM")
    )
    fetch = short.stages.get(kind="fetch")
    wait_for(lambda: Stage.objects.get(pk=fetch.pk).status in Stage.FINAL, 60, "the short job's fetch to end")
    assert Stage.objects.get(pk=fetch.pk).status == S.DONE
    assert Stage.objects.get(pk=compress.pk).status == S.RUNNING  # still on it
    # the runner queues what follows a finished stage in a step of its own
    wait_for(lambda: short.stages.get(kind="compress").status == S.QUEUED, 30, "the short job's compress to queue")
    assert short.stages.get(kind="compress").ahead_in_queue() == 1  # behind the long compress, and says so
    assert Stage.objects.get(pk=compress.pk).status == S.RUNNING

    long.cancel()
    wait_for(lambda: Stage.objects.get(pk=compress.pk).status in Stage.FINAL, 120, "the long compress to stop")
