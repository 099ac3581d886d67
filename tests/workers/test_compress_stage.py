import json

import pytest
from django.core.management import call_command

from hub.catalog.checkpoints import sha256_file
from hub.catalog.models import BaseModel, Variant
from hub.jobs.models import Job, Recipe, Stage
from tests.helpers import run_queued, submit_on_stories260k

pytestmark = pytest.mark.slow


@pytest.fixture
def calibration(settings, fixtures_dir):
    settings.CALIBRATION_DATASET = str(fixtures_dir / "datasets" / "wikitext2_raw" / "test.txt")
    settings.CALIBRATION_SAMPLES = 4
    settings.CALIBRATION_SEQ_LEN = 64


def test_it_compresses_the_base_into_a_cataloged_variant(transactional_db, stories260k, calibration, settings):
    job = submit_on_stories260k(stories260k)
    assert run_queued(job, "fetch") == "done"
    assert run_queued(job, "compress") == "done", job.stages.get(kind="compress").error

    stage = job.stages.get(kind="compress")
    variant = Variant.objects.get(job=job)
    assert variant.name == "stories260k-w8a8-int8" and variant.recipe.name == "w8a8-int8"
    assert variant.scheme.startswith("W8A8") and variant.gate == Variant.Gate.PENDING
    folder = settings.ARTIFACTS_DIR / "variants" / f"job{job.pk}" / "w8a8-int8-1"
    assert stage.outputs["path"] == f"artifacts/variants/job{job.pk}/w8a8-int8-1"  # shown to all: no worker path
    assert variant.local_path == str(folder)
    for entry in variant.files:
        assert sha256_file(folder / entry["path"]) == entry["sha256"]
    config = json.loads((folder / "config.json").read_text())
    assert config["quantization_config"]["quant_method"] == "compressed-tensors"
    assert {"recipe.yaml", "compression_report.json", "tokenizer.json"} <= {f["path"] for f in variant.files}
    assert any(k.startswith("compress:") for k in Job.objects.get(pk=job.pk).versions)
    assert job.stages.get(kind="publish").status == Stage.Status.QUEUED


def test_it_fails_clearly_on_a_recipe_the_library_refuses(transactional_db, stories260k, calibration):
    call_command("import_model", str(stories260k))
    recipe = Recipe.objects.create(name="mine", yaml="quant_stage:\n  quant_modifiers:\n    FancyModifier: {}\n")
    job = Job.submit(
        base_model=BaseModel.objects.get(name="stories260k"), recipes=[recipe], suite="", benchmark_profile=""
    )
    run_queued(job, "fetch")
    assert run_queued(job, "compress") == Stage.Status.FAILED
    stage = job.stages.get(kind="compress")
    assert "FancyModifier" in stage.error and "Traceback" not in stage.error
    assert not Variant.objects.exists()
    assert job.stages.get(kind="publish").status == Stage.Status.SKIPPED


def test_it_says_how_to_calibrate_offline_when_the_default_set_is_unreachable(transactional_db, stories260k):
    job = submit_on_stories260k(stories260k)
    run_queued(job, "fetch")
    assert run_queued(job, "compress") == Stage.Status.FAILED
    error = job.stages.get(kind="compress").error
    assert "could not load calibration dataset" in error and "HUB_CALIBRATION_DATASET" in error
