"""The repository page: the publish stage's model card, validated by huggingface_hub against
this hub and rendered (sanitized) on the page, with per-file and whole-snapshot downloads."""

import hashlib
import io
import re
import tarfile

import httpx2
import pytest
from django.test import Client
from huggingface_hub import HfApi, ModelCard

from hub.catalog.cards import model_card
from hub.catalog.models import BaseModel, Variant
from hub.jobs.models import Job, Recipe
from hub.results.models import EvalRun


@pytest.fixture
def hub_constants(hub_url, monkeypatch):
    """ModelCard.validate uses the process-wide endpoint, as HF_ENDPOINT sets it."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", hub_url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub_url + "/{repo_id}/resolve/{revision}/{filename}")
    return hub_url


@pytest.fixture
def card_text(alice) -> str:
    base = BaseModel.objects.create(
        name="meta-llama/Llama-3.2-1B",
        hf_repo_id="meta-llama/Llama-3.2-1B",
        architecture="LlamaForCausalLM",
        num_parameters=1_235_814_400,
        license="llama3.2",
        size_bytes=2_471_645_608,
        status=BaseModel.Status.READY,
    )
    job = Job.submit(
        base_model=base, recipes=[Recipe.for_preset("w4a16-gptq")], owner=alice, suite="quick", benchmark_profile=""
    )
    variant = Variant.objects.create(
        base=base,
        recipe=Recipe.for_preset("w4a16-gptq"),
        job=job,
        name="Llama-3.2-1B-w4a16-gptq",
        scheme="W4A16",
        size_bytes=1_000_000_000,
        files=[{"path": "model.safetensors", "size": 999_000_000, "sha256": "ab" * 32}],
        compression_report={"algorithms": ["gptq"], "device": "cpu", "calibration": {"samples": 512}},
    )
    run = EvalRun.objects.create(
        variant=variant,
        suite="quick",
        suite_version="3",
        engine_version="0.1.0",
        settings={"limit": 100},
        settings_key="k" * 64,
        metrics={"arc_easy": {"metric": "acc", "value": 0.61, "stderr": 0.02, "n": 100}},
        results={"configs": {"arc_easy": {"dataset_path": "allenai/ai2_arc"}}},
    )
    return model_card(variant, "alice/card", "http://hub.example", run, [], [])


@pytest.fixture
def repo(hub_constants, alice_token, card_text, tmp_path) -> str:
    folder = tmp_path / "repo"
    folder.mkdir()
    (folder / "README.md").write_text(card_text)
    (folder / "model.safetensors").write_bytes(b"\0" * 3000)
    api = HfApi(endpoint=hub_constants, token=alice_token)
    api.create_repo("alice/card")
    api.upload_folder(folder_path=folder, repo_id="alice/card")  # posts README.md to /api/validate-yaml first
    return "alice/card"


def test_it_writes_a_card_that_huggingface_hub_validates(repo, card_text, hub_url, tmp_path):
    card = ModelCard.load(HfApi(endpoint=hub_url).hf_hub_download(repo, "README.md", cache_dir=tmp_path))
    card.validate()  # the server-side metadata checks, here this hub's /api/validate-yaml
    assert card.data.base_model == "meta-llama/Llama-3.2-1B" and card.data.base_model_relation == "quantized"
    assert card.data.license == "llama3.2" and card.data.pipeline_tag == "text-generation"
    assert {"compressed-tensors", "w4a16"} <= set(card.data.tags)
    result = card.data.eval_results[0]
    assert (result.dataset_type, result.dataset_name, result.metric_type, result.metric_value) == (
        "allenai/ai2_arc",
        "arc_easy",
        "acc",
        0.61,
    )
    assert card.content == card_text


def test_it_refuses_cards_with_malformed_metadata(repo, hub_url, alice_token):
    api = HfApi(endpoint=hub_url, token=alice_token)
    for bad, reason in (
        ("---\nbase_model_relation: copied\nbase_model: a/b\n---\n# x\n", "base_model_relation"),
        ("---\nmodel-index:\n- name: x\n  results:\n  - task: {}\n---\n", "model-index"),
        ("---\ntags: [1, [2]]\n---\n", "tags"),
        ("---\n: [\n---\n", "YAML"),
    ):
        with pytest.raises(ValueError, match=reason):
            api.upload_file(path_or_fileobj=bad.encode(), path_in_repo="README.md", repo_id=repo)
    assert api.model_info(repo).card_data.base_model == "meta-llama/Llama-3.2-1B"  # nothing landed


def test_it_renders_the_card_and_lists_files_with_their_sha256(repo, hub_url):
    page = httpx2.get(f"{hub_url}/{repo}")
    assert page.status_code == 200
    html = page.text
    assert "<h1>card</h1>" in html and "<table>" in html
    assert "<th>task</th>" in html and "llama3.2" in html
    assert hashlib.sha256(b"\0" * 3000).hexdigest() in html
    head = HfApi(endpoint=hub_url).model_info(repo).sha
    link = f"/{repo}/resolve/{head}/model.safetensors?download=true"
    assert link in html
    download = httpx2.get(hub_url + link)
    assert download.headers["Content-Disposition"] == 'attachment; filename="model.safetensors"'
    assert download.content == b"\0" * 3000


def test_it_sanitizes_what_a_card_may_contain(repo, hub_url, alice_token):
    hostile = (
        "---\nlicense: mit\n---\n# Hi\n<script>alert(1)</script>\n\n<img src=x onerror=alert(2)>\n\n"
        '[click](javascript:alert(3)) <a href="https://example.com" onclick="alert(4)">ok</a>\n'
    )
    HfApi(endpoint=hub_url, token=alice_token).upload_file(
        path_or_fileobj=hostile.encode(), path_in_repo="README.md", repo_id=repo
    )
    html = httpx2.get(f"{hub_url}/{repo}").text
    card = html[html.index('<article class="card">') : html.index("</article>")]
    assert "<h1>Hi</h1>" in card and 'href="https://example.com"' in card
    for bad in ("<script", "alert(1)", "onerror", 'href="javascript', "onclick"):
        assert bad not in card
    assert "[click](javascript:alert(3))" in card  # left as text: not a link


def test_it_streams_the_whole_snapshot_as_a_tar(repo, hub_url, card_text):
    head = HfApi(endpoint=hub_url).model_info(repo).sha
    response = httpx2.get(f"{hub_url}/{repo}/archive/{head}.tar")
    assert response.status_code == 200 and int(response.headers["Content-Length"]) == len(response.content)
    with tarfile.open(fileobj=io.BytesIO(response.content)) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    top = f"card-{head[:10]}"
    assert set(files) == {f"{top}/.gitattributes", f"{top}/README.md", f"{top}/model.safetensors"}
    assert files[f"{top}/README.md"].decode() == card_text and files[f"{top}/model.safetensors"] == b"\0" * 3000


def test_it_shows_a_private_repo_page_to_its_owner_only(repo, alice, bob):
    from hub.hfapi.models import Repo

    Repo.objects.filter(namespace="alice", name="card").update(private=True)
    assert Client().get(f"/{repo}").status_code == 404
    other = Client()
    other.force_login(bob)
    assert other.get(f"/{repo}").status_code == 404
    owner = Client()
    owner.force_login(alice)
    assert owner.get(f"/{repo}").status_code == 200
    assert owner.get(f"/{repo}/archive/main.tar").status_code == 200


def test_it_links_the_card_to_a_page_of_the_base_that_exists(hub_url, alice):
    """A base imported from a folder has no repository: the card links to its catalog page, by
    the hub's absolute address (the card may be read on another hub)."""
    base = BaseModel.objects.create(name="stories260k", status=BaseModel.Status.READY)
    job = Job.submit(
        base_model=base, recipes=[Recipe.for_preset("w8a8-int8")], owner=alice, suite="", benchmark_profile=""
    )
    variant = Variant.objects.create(base=base, recipe=job.recipes.get(), job=job, name="stories260k-w8a8-int8")
    card = model_card(variant, "alice/card", hub_url, None, [], [])
    link = re.search(r"compression of \[stories260k\]\(([^)]+)\)", card).group(1)
    assert link == f"{hub_url}/models/{base.pk}/"
    assert httpx2.get(link).status_code == 200
    base.hf_repo_id = "HuggingFaceTB/SmolLM2-135M"
    assert "(https://huggingface.co/HuggingFaceTB/SmolLM2-135M)" in model_card(
        variant, "alice/card", hub_url, None, [], []
    )
