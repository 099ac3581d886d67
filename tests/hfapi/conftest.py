"""A live hub (pytest-django's live server: the real views over real HTTP) that stock
huggingface_hub clients talk to, and the users and tokens they talk to it with."""

import pytest
from huggingface_hub import CommitOperationAdd, HfApi

from hub.catalog.models import BaseModel
from tests.helpers import ready_to_publish, submit_job, write_tiny_checkpoint


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
    base = BaseModel.objects.create(name="stories260k", status=BaseModel.Status.READY, architecture="LlamaForCausalLM")
    job = submit_job(base, owner=alice, publish_targets=[f"{hub_url} alice/elsewhere"])
    return ready_to_publish(job, folder, "stories260k-w8a8-int8", "W8A8")


@pytest.fixture
def private_repo(hub_url, alice_token) -> str:
    """alice/secret, alice's private repository: a config and weights, in one commit."""
    api = HfApi(endpoint=hub_url, token=alice_token)
    api.create_repo("alice/secret", private=True)
    files = {"config.json": b"{}", "model.safetensors": b"weights"}
    api.create_commit(
        "alice/secret", [CommitOperationAdd(path, data) for path, data in files.items()], commit_message="files"
    )
    return "alice/secret"
