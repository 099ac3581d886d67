"""One user cannot flood the queue: per-user limits on active jobs and on submissions per minute
answer 429 with the limit and when to try again, on the API and on the web form; a job cannot
grow past the stages a job may have. Nothing beyond a limit is created."""

from concurrent.futures import ThreadPoolExecutor

import httpx2

from hub.jobs.models import Job, Stage
from tests.helpers import form_token, sign_in

LIMITS = {"HUB_MAX_ACTIVE_JOBS": "100", "HUB_MAX_SUBMISSIONS_PER_MINUTE": "100", "HUB_MAX_STAGES_PER_JOB": "100"}


def submit(url: str, token: str, base: int, **fields) -> httpx2.Response:
    """The same job each time, run again on purpose: the limits hold for that too."""
    body = {"base": base, "presets": ["w4a16"], "suite": "", "benchmark_profile": "", "rerun": True, **fields}
    return httpx2.post(f"{url}/api/v1/jobs", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=60)


def message(answer: httpx2.Response) -> str:
    return answer.json()["error"]["message"]


def test_it_limits_active_jobs_per_user_on_the_api(start_gunicorn, alice, alice_token, bob_token, llama):
    hub = start_gunicorn(**{**LIMITS, "HUB_MAX_ACTIVE_JOBS": "2"})
    answers = [submit(hub.url, alice_token, llama.pk) for _ in range(4)]
    assert [a.status_code for a in answers] == [201, 201, 429, 429], answers[-1].text
    refused = answers[2]
    assert "2 queued or running jobs" in message(refused) and "limit is 2" in message(refused), message(refused)
    assert refused.json()["error"]["code"] == "throttled" and int(refused.headers["Retry-After"]) > 0
    assert Job.objects.filter(owner=alice).count() == 2
    assert submit(hub.url, bob_token, llama.pk).status_code == 201  # the limit is per user
    # a finished (here: cancelled) job no longer counts
    first = answers[0].json()["id"]
    cancel = httpx2.post(f"{hub.url}/api/v1/jobs/{first}/cancel", headers={"Authorization": f"Bearer {alice_token}"})
    assert cancel.status_code == 200
    assert submit(hub.url, alice_token, llama.pk).status_code == 201
    # and a retry that would make it active again counts like a submission
    retry = httpx2.post(f"{hub.url}/api/v1/jobs/{first}/retry", headers={"Authorization": f"Bearer {alice_token}"})
    assert retry.status_code == 429 and "queued or running" in message(retry), retry.text
    assert Job.objects.get(pk=first).status == Job.Status.CANCELLED


def test_it_limits_submissions_per_minute_per_user_on_the_api(start_gunicorn, alice, alice_token, llama):
    hub = start_gunicorn(**{**LIMITS, "HUB_MAX_SUBMISSIONS_PER_MINUTE": "3"})
    answers = [submit(hub.url, alice_token, llama.pk) for _ in range(5)]
    assert [a.status_code for a in answers] == [201, 201, 201, 429, 429], answers[-1].text
    refused = answers[3]
    assert "3 jobs in the last minute" in message(refused) and "limit is 3 a minute" in message(refused), message(
        refused
    )
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    assert f"try again in {refused.headers['Retry-After']} s" in message(refused)
    assert Job.objects.filter(owner=alice).count() == 3


def test_it_limits_the_stages_of_one_job(start_gunicorn, alice, alice_token, llama):
    hub = start_gunicorn(**{**LIMITS, "HUB_MAX_STAGES_PER_JOB": "10"})
    # fetch + baseline + 4 x (compress, validate, benchmark, publish) = 18 stages
    big = submit(
        hub.url,
        alice_token,
        llama.pk,
        presets=["w4a16", "w8a16", "w8a8-int8", "fp8-dynamic"],
        suite="quick",
        benchmark_profile="sweep",
    )
    assert big.status_code == 422, big.text
    assert "18 stages" in big.text and "at most 10" in big.text, big.text
    assert not Job.objects.exists() and not Stage.objects.exists()
    fits = submit(hub.url, alice_token, llama.pk, presets=["w4a16", "w8a16"], suite="quick", benchmark_profile="sweep")
    assert fits.status_code == 201 and len(fits.json()["stages"]) == 10


def test_two_submissions_at_once_do_not_both_slip_past_the_limit(start_gunicorn, alice, alice_token, llama):
    hub = start_gunicorn(**{**LIMITS, "HUB_MAX_ACTIVE_JOBS": "2"})
    with ThreadPoolExecutor(8) as pool:
        codes = sorted(pool.map(lambda _: submit(hub.url, alice_token, llama.pk).status_code, range(8)))
    assert codes == [201, 201] + [429] * 6
    assert Job.objects.filter(owner=alice).count() == 2


def test_it_limits_active_jobs_on_the_web_form(start_gunicorn, alice, llama):
    hub = start_gunicorn(**{**LIMITS, "HUB_MAX_ACTIVE_JOBS": "1"})
    web = sign_in(hub.url, "alice", "alice-password-1")

    def post() -> httpx2.Response:
        token = form_token(web.get("/jobs/new/").text)
        return web.post(
            "/jobs/new/",
            data={
                "csrfmiddlewaretoken": token,
                "base": llama.pk,
                "presets": "w4a16",
                "revision": "main",
                "suite": "",
                "benchmark_profile": "",
                "rerun": "on",
            },
        )

    assert post().status_code == 302
    refused = post()
    assert refused.status_code == 429, refused.text[:2000]
    assert "1 queued or running job" in refused.text and "limit is 1" in refused.text
    assert Job.objects.filter(owner=alice).count() == 1
