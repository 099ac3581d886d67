"""A live hub (pytest-django's live server: the real views over real HTTP) that stock
huggingface_hub clients talk to, and the users and tokens they talk to it with."""

import pytest

from hub.catalog.checkpoints import sha256_file
from hub.catalog.models import BaseModel, Variant
from hub.jobs.models import Job, Recipe, Stage
from tests.helpers import write_tiny_checkpoint


@pytest.fixture(autouse=True)
def _storage(isolated_storage, transactional_db):
    """Each test's own folders, and a database the hub's other threads and processes see."""
    return isolated_storage


@pytest.fixture
def hub_url(live_server, settings, monkeypatch) -> str:
    """The live hub's URL. tests/conftest.py puts huggingface_hub offline so that nothing reaches
    huggingface.co; these tests reach only this hub, over LFS (it has no Xet)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    settings.SITE_URL = live_server.url
    settings.PUBLISH_LOCAL_ENDPOINT = live_server.url
    return live_server.url


@pytest.fixture
def recorded_variant_job(hub_url, alice, tmp_path, settings):
    """A job whose fetch and compress stages are recorded done, with a variant as compress
    records one (a tiny checkpoint), publishing to alice/elsewhere on this hub (configured as the
    external Hub too): for what publish writes or refuses."""
    settings.PUBLISH_HF_ENDPOINT = hub_url
    folder = write_tiny_checkpoint(tmp_path / "variant")
    (folder / "recipe.yaml").write_text("quant_stage: {}\n")
    files = [{"path": p.name, "size": p.stat().st_size, "sha256": sha256_file(p)} for p in sorted(folder.iterdir())]
    base = BaseModel.objects.create(name="stories260k", status=BaseModel.Status.READY, architecture="LlamaForCausalLM")
    recipe = Recipe.for_preset("w8a8-int8")
    job = Job.submit(
        base_model=base,
        recipes=[recipe],
        owner=alice,
        suite="",
        benchmark_profile="",
        publish_targets=[f"{hub_url} alice/elsewhere"],
    )
    job.stages.filter(kind__in=(Stage.Kind.FETCH, Stage.Kind.COMPRESS)).update(status=Stage.Status.DONE)
    Variant.objects.create(
        base=base,
        recipe=recipe,
        job=job,
        name="stories260k-w8a8-int8",
        scheme="W8A8",
        local_path=str(folder),
        files=files,
        size_bytes=sum(f["size"] for f in files),
    )
    job.dispatch()
    return job
