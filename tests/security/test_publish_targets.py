"""A job's "Also publish to" line names where its variant goes. Named as `endpoint owner/name`,
a listener of alice's on loopback (or a link-local address, or a URL with a user name in it)
would have received the hub's own publish token in the worker's first request. The hub's token
goes to the endpoint its operator configured and nowhere else; another endpoint must be on the
operator's list, and then it gets the user's own token for it."""

from collections.abc import Iterator

import httpx2
import pytest

from hub.catalog.models import BaseModel
from hub.jobs.models import Job
from tests.helpers import Listener, form_token, ready_to_publish, run_queued, sign_in, submit_job, write_tiny_checkpoint

HUB_TOKEN = "hf_hub-publish-token-of-the-operator"
ALICES_OWN = "hf_alices-own-token-for-that-hub"


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener(401, {"Content-Type": "application/json"}, b'{"error": "no"}')
    yield server
    server.close()


@pytest.fixture
def worker_side(settings, monkeypatch) -> None:
    """The publish stage runs in this process with the hub's token configured, as a worker's."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    settings.PUBLISH_HF_TOKEN = HUB_TOKEN


def submit(url: str, token: str, base: BaseModel, target: str) -> httpx2.Response:
    return httpx2.post(
        f"{url}/api/v1/jobs",
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
        json={"base": base.pk, "presets": ["w8a16"], "suite": "", "benchmark_profile": "", "publish_targets": [target]},
    )


def test_it_refuses_a_named_endpoint_in_the_job_form(hub, alice, llama, listener):
    client = sign_in(hub.url, "alice", "alice-password-1")
    page = client.get("/jobs/new/").text
    answer = client.post(
        "/jobs/new/",
        data={
            "csrfmiddlewaretoken": form_token(page),
            "base": llama.pk,
            "presets": "w8a16",
            "revision": "main",
            "publish_targets": f"{listener.url} alice/exfil",
        },
    )
    assert answer.status_code == 200 and "this hub does not publish to" in answer.text
    assert "HUB_PUBLISH_ALLOWED_ENDPOINTS" in answer.text
    assert not Job.objects.exists() and listener.requests == []


@pytest.mark.parametrize(
    "named",
    [
        "{listener} alice/exfil",
        "http://alice:secret@127.0.0.1:{port} alice/exfil",  # userinfo: the host is the part after @
        "http://169.254.169.254 alice/exfil",  # link-local: cloud metadata services
        "{listener}/#frag alice/exfil",
    ],
)
def test_it_refuses_named_endpoints_over_the_api(start_gunicorn, alice, alice_token, llama, listener, named):
    # even with the listener allowed, a URL that carries more than scheme://host[:port] is refused
    allowed = listener.url if "@" in named or "#" in named else ""
    hub = start_gunicorn(HUB_PUBLISH_ALLOWED_ENDPOINTS=allowed)
    answer = submit(hub.url, alice_token, llama, named.format(listener=listener.url, port=listener.port))
    assert answer.status_code == 422, answer.text
    message = str(answer.json()["error"]["details"]["publish_targets"])
    assert "this hub does not publish to" in message or "is not an endpoint" in message, message
    assert not Job.objects.exists() and listener.requests == []


def test_it_never_sends_the_hubs_token_to_an_endpoint_a_job_names(
    hub, alice, llama, listener, worker_side, settings, tmp_path
):
    """A job row that names the listener anyway (submitted before the rule, or while the
    operator still allowed it): the publish stage refuses before it sends anything."""
    settings.PUBLISH_LOCAL_ENDPOINT = hub.url
    job = submit_job(llama, "w8a16", owner=alice, publish_targets=[f"{listener.url} alice/exfil"])
    ready_to_publish(job, write_tiny_checkpoint(tmp_path / "variant"), f"variant-{job.pk}", "W8A16")
    assert run_queued(job, "publish") == "failed"
    error = job.stages.get(kind="publish").error
    assert "this hub does not publish to" in error and HUB_TOKEN not in error
    assert listener.requests == []


def test_it_sends_the_users_own_token_to_an_allowed_endpoint(
    start_gunicorn, alice, alice_token, llama, listener, worker_side, settings, tmp_path
):
    hub = start_gunicorn(HUB_PUBLISH_ALLOWED_ENDPOINTS=listener.url)
    settings.PUBLISH_ALLOWED_ENDPOINTS, settings.PUBLISH_LOCAL_ENDPOINT = [listener.url], hub.url
    auth = {"Authorization": f"Bearer {alice_token}"}
    refused = submit(hub.url, alice_token, llama, f"{listener.url} alice/there")
    assert refused.status_code == 422 and "your own write token" in refused.text

    kept = httpx2.put(
        f"{hub.url}/api/v1/credentials", headers=auth, json={"endpoint": f"{listener.url}/", "token": ALICES_OWN}
    )
    assert kept.status_code == 200 and kept.json()["endpoint"] == listener.url and ALICES_OWN not in kept.text
    listed = httpx2.get(f"{hub.url}/api/v1/credentials", headers=auth)
    assert [c["endpoint"] for c in listed.json()] == [listener.url] and ALICES_OWN not in listed.text
    assert ALICES_OWN not in sign_in(hub.url, "alice", "alice-password-1").get("/tokens/").text

    answer = submit(hub.url, alice_token, llama, f"{listener.url} alice/there")
    assert answer.status_code == 201, answer.text
    job = Job.objects.get(pk=answer.json()["id"])
    ready_to_publish(job, write_tiny_checkpoint(tmp_path / "variant"), f"variant-{job.pk}", "W8A16")
    run_queued(job, "publish")  # the listener refuses the upload; what it was sent is the point
    assert listener.requests and listener.authorizations() == {f"Bearer {ALICES_OWN}"}
    assert ALICES_OWN not in job.stages.get(kind="publish").error
