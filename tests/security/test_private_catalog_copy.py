"""A catalog copy outliving its source's visibility: bob submits a job on alice's public repository
of this hub, the catalog records the base, a variant and its results, then alice makes the
repository private. From then on neither anonymous visitors nor bob may read any of it through
any door (pages, file downloads, API v1, the catalog list and its cache); alice still may, and
making the repository public again opens them again."""

import httpx2
from huggingface_hub import HfApi

from hub.catalog.checkpoints import sha256_file
from hub.catalog.models import BaseModel, Variant
from hub.jobs.models import Job
from hub.results.models import EvalRun
from tests.helpers import sign_in, write_tiny_checkpoint


def doors(base: BaseModel, variant: Variant) -> list[str]:
    return [
        f"/models/{base.pk}/",
        f"/models/{base.pk}/compare/",
        f"/models/{base.pk}/files/model.safetensors",
        f"/models/variants/{variant.pk}/",
        f"/models/variants/{variant.pk}/files/model.safetensors",
        f"/api/v1/models/{base.pk}",
        f"/api/v1/variants/{variant.pk}",
    ]


def listed(client: httpx2.Client, base: BaseModel, variant: Variant) -> list[str]:
    """Where the rows still show in lists: the catalog page (several times: each gunicorn worker
    keeps its own cache) and the API's lists of models, variants, results and jobs."""
    found = []
    for _ in range(4):
        if variant.name in client.get("/").text:
            found.append("catalog page")
    if any(m["id"] == base.pk for m in client.get("/api/v1/models").json()["items"]):
        found.append("/api/v1/models")
    if any(v["id"] == variant.pk for v in client.get("/api/v1/variants").json()["items"]):
        found.append("/api/v1/variants")
    if client.get("/api/v1/results/evals").json()["items"]:
        found.append("/api/v1/results/evals")
    if client.get("/api/v1/jobs").json()["items"]:
        found.append("/api/v1/jobs")
    return found


def test_it_closes_every_door_when_the_source_repository_turns_private(
    hf_hub, alice, alice_token, bob, bob_token, tmp_path
):
    folder = write_tiny_checkpoint(tmp_path / "tiny")
    api = HfApi(endpoint=hf_hub.url, token=alice_token)
    api.create_repo("alice/tiny")
    api.upload_folder(repo_id="alice/tiny", folder_path=folder)

    submitted = httpx2.post(
        f"{hf_hub.url}/api/v1/jobs",
        headers={"Authorization": f"Bearer {bob_token}"},
        timeout=60,
        json={"hf_id": "alice/tiny", "presets": ["w8a8-int8"], "suite": "", "benchmark_profile": ""},
    )
    assert submitted.status_code == 201, submitted.text
    job = Job.objects.get(pk=submitted.json()["id"])
    # what the fetch, compress and validate stages record
    files = [{"path": p.name, "size": p.stat().st_size, "sha256": sha256_file(p)} for p in sorted(folder.iterdir())]
    base = job.base_model
    assert base.on_this_hub and not base.private and base.owner == bob
    BaseModel.objects.filter(pk=base.pk).update(status=BaseModel.Status.READY, local_path=str(folder), files=files)
    variant = Variant.objects.create(
        base=base,
        recipe=job.recipes.get(),
        job=job,
        name="tiny-w8a8-int8",
        owner=bob,
        local_path=str(folder),
        files=files,
    )
    EvalRun.objects.create(
        variant=variant,
        job=job,
        suite="quick",
        suite_version="1",
        engine_version="1",
        settings={},
        settings_key="0" * 64,
        metrics={},
    )

    anonymous = httpx2.Client(base_url=hf_hub.url, timeout=60)
    as_bob = httpx2.Client(base_url=hf_hub.url, timeout=60, headers={"Authorization": f"Bearer {bob_token}"})
    as_alice = httpx2.Client(base_url=hf_hub.url, timeout=60, headers={"Authorization": f"Bearer {alice_token}"})
    bob_pages = sign_in(hf_hub.url, "bob", "bob-password-1")
    for client in (anonymous, as_bob, bob_pages):
        assert [client.get(url).status_code for url in doors(base, variant)] == [200] * 7
    assert listed(anonymous, base, variant) == ["catalog page"] * 4 + [
        "/api/v1/models",
        "/api/v1/variants",
        "/api/v1/results/evals",
        "/api/v1/jobs",
    ]

    api.update_repo_settings("alice/tiny", private=True)

    for who, client in (("anonymous", anonymous), ("bob's token", as_bob), ("bob's session", bob_pages)):
        answers = {url: client.get(url).status_code for url in doors(base, variant)}
        assert answers == dict.fromkeys(answers, 404), who
        assert listed(client, base, variant) == [], who
        assert b"tiny" not in client.get(f"/api/v1/jobs/{job.pk}").content, who
    assert as_alice.get(f"/api/v1/models/{base.pk}").status_code == 200
    alice_pages = sign_in(hf_hub.url, "alice", "alice-password-1")
    assert alice_pages.get(f"/models/{base.pk}/files/model.safetensors").status_code == 200

    api.update_repo_settings("alice/tiny", private=False)
    assert [anonymous.get(url).status_code for url in doors(base, variant)] == [200] * 7
