"""REST API /api/v1/: reads with visibility, pagination, token auth and scopes, job actions,
and one error shape everywhere."""

import pytest
from django.core.management import call_command

from hub.api.models import ApiToken
from hub.catalog.models import BaseModel
from hub.jobs.models import Job, Stage


@pytest.fixture
def read_token(alice) -> str:
    return ApiToken.issue(alice, "read", ApiToken.Scope.READ)[1]


def auth(token: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def test_it_lists_public_models_and_variants(client, catalog):
    body = client.get("/api/v1/models").json()
    assert body["count"] == 2 and {m["name"] for m in body["items"]} == {"org/llama-1b", "org/qwen-7b"}
    variants = client.get("/api/v1/variants").json()["items"]
    w4 = next(v for v in variants if v["name"] == "org/llama-1b-w4a16-gptq")
    assert w4["recovery"] == pytest.approx(0.976) and w4["speedup"] == pytest.approx(1.5) and w4["gate"] == "validated"
    assert w4["url"] == f"/models/variants/{catalog.w4.pk}/"


def test_it_filters_variants_like_the_catalog(client, catalog):
    assert [v["name"] for v in client.get("/api/v1/variants?gpu=8.0").json()["items"]] == ["org/llama-1b-w4a16-gptq"]
    assert client.get("/api/v1/variants?scheme=FP8_DYNAMIC").json()["count"] == 1
    assert client.get(f"/api/v1/variants?base={catalog.qwen.pk}").json()["count"] == 0


def test_it_shows_details_with_files_and_publications(client, catalog):
    model = client.get(f"/api/v1/models/{catalog.llama.pk}").json()
    assert sorted(model["variants"]) == sorted([catalog.w4.pk, catalog.fp8.pk])
    assert {f["path"] for f in model["files"]} == {"config.json", "model.safetensors"}
    variant = client.get(f"/api/v1/variants/{catalog.w4.pk}").json()
    assert variant["publications"][0]["repo_id"] == "org/llama-1b-w4a16-gptq"
    assert len(variant["files"][0]["sha256"]) == 64


def test_it_returns_results(client, catalog):
    evals = client.get(f"/api/v1/results/evals?variant={catalog.w4.pk}").json()["items"]
    assert len(evals) == 1 and {r["task"] for r in evals[0]["recoveries"]} == {"arc_easy", "hellaswag"}
    assert evals[0]["recoveries"][0]["ci_low"] == -0.02
    bench = client.get(f"/api/v1/results/benchmarks?base={catalog.llama.pk}").json()["items"]
    assert bench[0]["metrics"]["output_throughput"] == 800.0


def test_it_paginates(client, catalog):
    first = client.get("/api/v1/models?page_size=1").json()
    second = client.get("/api/v1/models?page_size=1&page=2").json()
    assert first["count"] == 2 and len(first["items"]) == 1 and first["items"] != second["items"]


def test_it_shows_private_rows_to_their_owner_only(client, catalog, alice_token, bob):
    assert client.get(f"/api/v1/models/{catalog.private.pk}").status_code == 404
    assert client.get(f"/api/v1/models/{catalog.private.pk}", **auth(alice_token)).status_code == 200
    bob_token = ApiToken.issue(bob, "bob")[1]
    assert client.get(f"/api/v1/variants/{catalog.secret.pk}", **auth(bob_token)).status_code == 404
    assert client.get("/api/v1/models", **auth(alice_token)).json()["count"] == 3


@pytest.mark.parametrize(
    "request_, status, code",
    [
        (("get", "/api/v1/models/999999", {}), 404, "not_found"),
        (("get", "/api/v1/models?page=0", {}), 422, "invalid"),
        (("post", "/api/v1/jobs", {}), 401, "unauthorized"),
        (("get", "/api/v1/models", {"HTTP_AUTHORIZATION": "Bearer hub_not-a-token"}), 401, "unauthorized"),
    ],
)
def test_it_has_one_error_shape(client, catalog, request_, status, code):
    method, url, extra = request_
    response = getattr(client, method)(url, content_type="application/json", **extra)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code and response.json()["error"]["message"]


def test_it_refuses_writes_with_a_read_token_or_a_revoked_one(client, catalog, read_token, alice_token):
    payload = {"base": catalog.llama.pk, "presets": ["w4a16"], "suite": "", "benchmark_profile": ""}
    response = client.post("/api/v1/jobs", payload, content_type="application/json", **auth(read_token))
    assert response.status_code == 403 and "read-only" in response.json()["error"]["message"]
    ApiToken.objects.filter(prefix=alice_token[:12]).get().revoke()
    assert client.post("/api/v1/jobs", payload, content_type="application/json", **auth(alice_token)).status_code == 401


def test_it_refuses_a_preset_the_bases_widths_cannot_take(client, alice_token, fixtures_dir):
    call_command("import_model", str(fixtures_dir / "models" / "stories260k"))
    base = BaseModel.objects.get(name="stories260k")
    response = client.post(
        "/api/v1/jobs",
        {"base": base.pk, "presets": ["w4a16-gptq"]},
        content_type="application/json",
        **auth(alice_token),
    )
    assert response.status_code == 422
    assert "w4a16-gptq cannot quantize stories260k" in response.json()["error"]["details"]["presets"][0]["message"]
    assert not Job.objects.filter(base_model=base).exists()


def test_it_answers_an_identical_submission_with_409_and_the_job_unless_rerun(client, catalog, alice_token):
    payload = {"base": catalog.llama.pk, "presets": ["w4a16"], "suite": "", "benchmark_profile": ""}

    def submit(**extra) -> "object":
        return client.post("/api/v1/jobs", {**payload, **extra}, content_type="application/json", **auth(alice_token))

    first = submit().json()
    refused = submit()
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "duplicate"
    assert refused.json()["error"]["details"] == {"job": first["id"], "url": f"/jobs/{first['id']}/"}
    again = submit(rerun=True)
    assert again.status_code == 201 and again.json()["rerun_of"] == first["id"] and first["rerun_of"] is None


def test_it_submits_with_the_forms_checks(client, catalog, alice_token, alice):
    response = client.post(
        "/api/v1/jobs",
        {"base": catalog.llama.pk, "presets": ["fp8-dynamic"], "gpu": "8.0"},
        content_type="application/json",
        **auth(alice_token),
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid" and "needs compute capability 8.9" in error["details"]["presets"][0]["message"]

    response = client.post(
        "/api/v1/jobs",
        {"base": catalog.llama.pk, "presets": ["w4a16"], "suite": "", "benchmark_profile": ""},
        content_type="application/json",
        **auth(alice_token),
    )
    assert response.status_code == 201
    job = response.json()
    assert job["owner"] == "alice" and job["recipes"] == ["w4a16"]
    assert [s["kind"] for s in job["stages"]] == ["fetch", "compress", "publish"]
    assert Job.objects.get(pk=job["id"]).owner == alice


def test_it_cancels_and_retries_jobs(client, catalog, alice_token, bob):
    job = client.post(
        "/api/v1/jobs",
        {"base": catalog.llama.pk, "presets": ["w4a16"], "suite": "", "benchmark_profile": ""},
        content_type="application/json",
        **auth(alice_token),
    ).json()
    bob_token = ApiToken.issue(bob, "bob", ApiToken.Scope.WRITE)[1]
    assert client.post(f"/api/v1/jobs/{job['id']}/cancel", **auth(bob_token)).status_code == 403

    cancelled = client.post(f"/api/v1/jobs/{job['id']}/cancel", **auth(alice_token)).json()
    assert cancelled["status"] == "cancelled" and {s["status"] for s in cancelled["stages"]} == {"cancelled"}

    retried = client.post(
        f"/api/v1/jobs/{job['id']}/retry", {}, content_type="application/json", **auth(alice_token)
    ).json()
    assert retried["status"] in ("queued", "running") and not retried["cancel_requested"]
    statuses = {s["kind"]: s["status"] for s in retried["stages"]}
    assert statuses == {"fetch": Stage.Status.QUEUED, "compress": Stage.Status.PENDING, "publish": Stage.Status.PENDING}

    again = client.post(f"/api/v1/jobs/{job['id']}/retry", {}, content_type="application/json", **auth(alice_token))
    assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"


def test_it_lists_jobs_the_caller_may_see(client, catalog, alice_token, alice):
    client.post(
        "/api/v1/jobs",
        {"base": catalog.private.pk, "presets": ["w4a16"], "private": True},
        content_type="application/json",
        **auth(alice_token),
    )
    assert client.get("/api/v1/jobs").json()["count"] == 1  # the catalog's public job
    assert client.get("/api/v1/jobs?mine=true", **auth(alice_token)).json()["count"] == 2
