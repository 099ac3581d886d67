"""Suites through the REST API with a token: upload (multipart), list, read, use in POST /jobs,
and the refusals, each in the API's one error shape."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from hub.api.models import ApiToken
from hub.jobs.models import Job
from hub.suites.models import Suite
from tests.suite_files import make_dataset, suite_files


def auth(token: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def post_suite(client, token: str, files: dict[str, bytes], **fields):
    uploads = [SimpleUploadedFile(name, data) for name, data in files.items()]
    body = {"suite": uploads[0], "files": uploads[1:], **fields}
    return client.post("/api/v1/suites", body, **auth(token))


@pytest.fixture
def dataset(fixtures_dir, tmp_path, alice) -> str:
    return make_dataset(fixtures_dir, tmp_path / "arc-mini", "alice/arc-mini", "alice")


def test_it_uploads_lists_and_submits_a_job_on_a_suite(client, alice_token, bob_token, dataset, llama):
    answer = post_suite(client, alice_token, suite_files(), private="true")
    assert answer.status_code == 201, answer.json()
    suite = answer.json()
    assert (suite["reference"], suite["private"], suite["used"]) == ("alice/arc-mini@1", True, False)
    assert [t["file"] for t in suite["tasks"]] == ["arc_mini.yaml"] and list(suite["datasets"]) == ["alice/arc-mini"]
    assert post_suite(client, alice_token, suite_files(), private="true").status_code == 200  # identical

    assert [s["reference"] for s in client.get("/api/v1/suites", **auth(alice_token)).json()["items"]] == [
        "alice/arc-mini@1"
    ]
    assert client.get("/api/v1/suites", **auth(bob_token)).json()["count"] == 0
    assert client.get(f"/api/v1/suites/{suite['id']}", **auth(bob_token)).status_code == 404
    assert client.get(f"/api/v1/suites/{suite['id']}").status_code == 404  # anonymous

    job = {"base": llama.pk, "presets": ["w8a8-int8"], "suite": "alice/arc-mini", "benchmark_profile": ""}
    refused = client.post("/api/v1/jobs", job, content_type="application/json", **auth(bob_token))
    assert refused.status_code == 422
    assert refused.json()["error"]["details"]["suite"][0]["message"] == "no suite alice/arc-mini that you may read"
    answer = client.post("/api/v1/jobs", job, content_type="application/json", **auth(alice_token))
    assert answer.status_code == 201, answer.json()
    assert (answer.json()["suite"], answer.json()["user_suite"]) == ("alice/arc-mini@1", suite["id"])
    assert Job.objects.get().user_suite_id == suite["id"]
    assert client.get(f"/api/v1/suites/{suite['id']}", **auth(alice_token)).json()["used"] is True

    # a used version stays as it is: replacing or deleting it is a conflict
    replaced = post_suite(client, alice_token, suite_files(limit=10), replace="true")
    assert (
        replaced.status_code == 409 and "was used by a job, so it cannot change" in replaced.json()["error"]["message"]
    )
    assert client.delete(f"/api/v1/suites/{suite['id']}", **auth(alice_token)).status_code == 409
    newer = post_suite(client, alice_token, suite_files(limit=10))
    assert newer.status_code == 201 and newer.json()["version"] == 2
    assert (
        client.delete(f"/api/v1/suites/{newer.json()['id']}", **auth(bob_token)).status_code == 403
    )  # public, not his
    assert client.delete(f"/api/v1/suites/{newer.json()['id']}", **auth(alice_token)).status_code == 204
    assert list(Suite.objects.values_list("version", flat=True)) == [1]


def test_it_refuses_a_bad_upload_in_the_apis_error_shape(client, alice, alice_token, dataset, tmp_path):
    files = suite_files()
    files["arc_mini.yaml"] = files["arc_mini.yaml"].replace(b"doc_to_target: label", b"doc_to_target: !function u.f")
    answer = post_suite(client, alice_token, files)
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "invalid"
    assert answer.json()["error"]["message"].startswith("arc_mini.yaml: line 8: the tag !function is refused")
    read_only = ApiToken.issue(alice, "read", ApiToken.Scope.READ)[1]
    assert post_suite(client, read_only, suite_files()).status_code == 403
    assert post_suite(client, "", suite_files()).status_code == 401
    assert not Suite.objects.exists() and not (tmp_path / "artifacts" / "suites" / "objects").exists()
