"""A public job's page and its API record show each stage's log, error and outputs to everyone.
They named the worker's folders as absolute paths (its var dir, models and artifacts dirs, its
virtualenv and site-packages, in a traceback too): a map of the worker for whoever looks. They
say relative names instead, such as `models/local/...`."""

import json
import sys
import sysconfig

import httpx2
import pytest

from hub.catalog.models import BaseModel
from hub.jobs.models import Job, Recipe
from tests.helpers import run_queued, write_tiny_checkpoint


def worker_folders(settings) -> list[str]:
    return [
        str(p)
        for p in (
            settings.VAR_DIR,
            settings.MODELS_DIR,
            settings.ARTIFACTS_DIR,
            settings.BASE_DIR,
            sys.prefix,
            sysconfig.get_paths()["purelib"],
        )
    ]


def shown(hub_url: str, job: Job) -> str:
    """What anyone sees of the job: its page and its API record."""
    return (
        httpx2.get(f"{hub_url}/jobs/{job.pk}/", timeout=60).text
        + httpx2.get(f"{hub_url}/api/v1/jobs/{job.pk}", timeout=60).text
    )


def stage_text(job: Job, kind: str) -> str:
    stage = job.stages.get(kind=kind)
    return f"{stage.log}\n{stage.error}\n{stage.message}\n{json.dumps(stage.outputs)}"


def test_it_names_no_worker_folder_in_a_stage_that_went_well(hub, alice, tmp_path, settings):
    source = write_tiny_checkpoint(tmp_path / "incoming" / "tiny")
    base = BaseModel.objects.create(name="alice/tiny", source_path=str(source))
    job = Job.submit(base_model=base, recipes=[Recipe.for_preset("w8a16")], owner=alice, suite="", benchmark_profile="")
    assert run_queued(job, "fetch") == "done"
    text = stage_text(job, "fetch")
    assert "models/local/alice/tiny/" in text, text
    for folder in [*worker_folders(settings), str(tmp_path)]:
        assert folder not in text and folder not in shown(hub.url, job), folder


@pytest.mark.slow
def test_it_names_no_worker_folder_in_a_traceback(hub, alice, settings):
    """An unexpected failure (transformers cannot read the config) records its traceback tail."""
    folder = write_tiny_checkpoint(settings.MODELS_DIR / "local" / "alice" / "empty" / ("0" * 64))
    (folder / "config.json").write_text('{"architectures": ["LlamaForCausalLM"], "model_type": ')
    base = BaseModel.objects.create(
        name="alice/empty", status=BaseModel.Status.READY, local_path=str(folder), architecture="LlamaForCausalLM"
    )
    job = Job.submit(base_model=base, recipes=[Recipe.for_preset("w8a16")], owner=alice, suite="", benchmark_profile="")
    assert run_queued(job, "fetch") == "done"
    assert run_queued(job, "compress") == "failed"
    text = stage_text(job, "compress")
    assert "Traceback" in text and "site-packages/transformers/" in text and "models/local/alice/empty/" in text, text
    for folder in worker_folders(settings):
        assert folder not in text and folder not in shown(hub.url, job), folder
