"""A checkpoint that names files outside itself: bob's sharded checkpoint whose index maps its
tensors to alice's private variant (`../` up and over, or an absolute path), or whose shard is a
link to it. Followed, bob's public variant would carry alice's weights. Fetch (from a local
import and from a repository uploaded to this hub) and every loader refuse it, in words that
tell nothing about the worker's disk."""

import json
import shutil
from pathlib import Path

import pytest
from huggingface_hub import HfApi

from hub.catalog.checkpoints import read_safetensors_header
from hub.catalog.models import BaseModel
from hub.jobs.models import Job, Recipe
from tests.helpers import run_queued

REFUSAL = "is not a file of this checkpoint"


@pytest.fixture
def alice_weights(settings, stories260k) -> Path:
    """alice's private variant on the worker's disk, where compress leaves it."""
    folder = settings.ARTIFACTS_DIR / "variants" / "job73" / "w8a16-1"
    folder.mkdir(parents=True)
    shutil.copy(stories260k / "model.safetensors", folder / "model.safetensors")
    shutil.copy(stories260k / "tokenizer.json", folder / "tokenizer.json")
    return folder / "model.safetensors"


def bob_checkpoint(folder: Path, stories260k: Path, attack: str, alice_weights: Path, up: str) -> Path:
    """stories260k, sharded, whose embedding comes from alice's weights; `up` climbs from the
    folder the checkpoint is read in to the worker's var dir."""
    shutil.copytree(stories260k, folder)
    outside = f"{up}artifacts/variants/job73/w8a16-1/"
    own = "model-00001-of-00002.safetensors"
    (folder / "model.safetensors").rename(folder / own)
    names = [n for n in read_safetensors_header(folder / own) if n != "__metadata__"]
    alices = {"dotdot": outside + "model.safetensors", "absolute": str(alice_weights)}.get(attack, own)
    weight_map = {name: alices if name == "model.embed_tokens.weight" else own for name in names}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    if attack == "symlink":
        (folder / own).unlink()
        (folder / own).symlink_to(alice_weights)
    elif attack == "tokenizer":  # transformers opens the one of these it picks
        config = json.loads((folder / "tokenizer_config.json").read_text())
        (folder / "tokenizer_config.json").write_text(
            json.dumps({**config, "fast_tokenizer_files": [outside + "tokenizer.4.0.json"]})
        )
    return folder


def submit(base: BaseModel) -> Job:
    return Job.submit(base_model=base, recipes=[Recipe.for_preset("w8a16")], suite="", benchmark_profile="")


def assert_refused_quietly(message: str, settings, *hidden: Path) -> None:
    """Refused, naming no folder of the worker's (bob's own names are his to see again)."""
    assert REFUSAL in message, message
    for secret in (settings.VAR_DIR, settings.MODELS_DIR, *hidden):
        assert str(secret) not in message, message


@pytest.mark.parametrize("attack", ["dotdot", "absolute", "symlink", "tokenizer"])
def test_it_refuses_an_imported_checkpoint_naming_files_outside_it(
    transactional_db, stories260k, alice_weights, tmp_path, settings, attack
):
    # import_model reads the folder where it lies: here, a sibling of the var dir's artifacts
    source = bob_checkpoint(tmp_path / "incoming" / "bob", stories260k, attack, alice_weights, "../../")
    job = submit(BaseModel.objects.create(name="bob/sharded", source_path=str(source)))
    assert run_queued(job, "fetch") == "failed"
    stage = job.stages.get(kind="fetch")
    assert_refused_quietly(stage.error, settings, source)
    assert not list((settings.MODELS_DIR / "local").rglob("*.safetensors"))


def test_it_answers_alike_whether_the_outside_file_exists_or_not(
    transactional_db, stories260k, alice_weights, tmp_path, settings
):
    """The refusal must not tell bob which paths exist on the worker."""
    errors = []
    for name, job_dir in (("exists", "job73"), ("nothing", "job74")):
        source = bob_checkpoint(tmp_path / "incoming" / name, stories260k, "dotdot", alice_weights, "../../")
        index = source / "model.safetensors.index.json"
        index.write_text(index.read_text().replace("job73", job_dir))
        job = submit(BaseModel.objects.create(name=f"bob/{name}", source_path=str(source)))
        assert run_queued(job, "fetch") == "failed"
        errors.append(job.stages.get(kind="fetch").error.replace(job_dir, "jobN").replace(name, "NAME"))
    assert errors[0] == errors[1] and REFUSAL in errors[0]


@pytest.fixture
def hub_client(hub, settings, monkeypatch) -> str:
    """The fetch stage runs here and downloads from the gunicorn hub, as a worker does."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    settings.PUBLISH_LOCAL_ENDPOINT = hub.url
    return hub.url


@pytest.mark.parametrize(
    "attack", ["dotdot", "absolute", "tokenizer"]
)  # an upload carries a link's content, not the link
def test_it_refuses_an_uploaded_repository_naming_files_outside_it(
    hub_client, bob, bob_token, stories260k, alice_weights, tmp_path, settings, attack
):
    # fetch downloads into models/hf/bob/sharded/.download-*/ and keeps it in models/hf/bob/sharded/<sha>/
    folder = bob_checkpoint(tmp_path / "upload", stories260k, attack, alice_weights, "../../../../../")
    api = HfApi(endpoint=hub_client, token=bob_token)
    api.create_repo("bob/sharded")
    api.upload_folder(folder_path=folder, repo_id="bob/sharded")
    base = BaseModel.objects.create(
        name="bob/sharded", hf_repo_id="bob/sharded", revision="main", on_this_hub=True, owner=bob
    )
    job = Job.submit(base_model=base, recipes=[Recipe.for_preset("w8a16")], owner=bob, suite="", benchmark_profile="")
    assert run_queued(job, "fetch") == "failed"
    assert_refused_quietly(job.stages.get(kind="fetch").error, settings)
    assert not list((settings.MODELS_DIR / "hf").rglob("*.safetensors"))


def load_with_engine(folder: Path, out: Path) -> None:
    import torch

    from engine.loader import load_model

    load_model(folder, torch.float32, torch.device("cpu"), max_position=64)


def load_with_compress(folder: Path, out: Path) -> None:
    from compress import compress

    compress(folder, "fp8-dynamic", out, device="cpu")


def load_dequantized(folder: Path, out: Path) -> None:
    from compress.save import load_dequantized

    load_dequantized(folder)


def load_with_evals(folder: Path, out: Path) -> None:
    from evals import prepare

    prepare(folder, "quick")


@pytest.mark.parametrize("attack", ["dotdot", "absolute", "symlink"])
@pytest.mark.parametrize("loader", [load_with_engine, load_with_compress, load_dequantized, load_with_evals])
def test_it_refuses_such_a_checkpoint_in_every_loader(stories260k, alice_weights, tmp_path, settings, loader, attack):
    folder = bob_checkpoint(
        settings.MODELS_DIR / "hf" / "bob" / "sharded" / ("a" * 64),
        stories260k,
        attack,
        alice_weights,
        "../../../../../",
    )
    with pytest.raises(ValueError, match=REFUSAL) as refused:
        loader(folder, tmp_path / "out")
    assert_refused_quietly(str(refused.value), settings, folder)
    assert not (tmp_path / "out").exists()
