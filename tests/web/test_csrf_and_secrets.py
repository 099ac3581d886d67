"""Every form of the site needs its CSRF token; private jobs are as invisible to others through
the REST API as through the pages (404, never 403); API tokens never come back in error bodies,
logs or the debug error page, and neither do the hub's own secrets."""

import logging
import re
import secrets
import sys
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import DatabaseError
from django.test import Client, RequestFactory
from django.views.debug import ExceptionReporter

from hub.api.models import ApiToken, bearer_token
from hub.jobs.models import Job, Recipe

ROOT = Path(__file__).resolve().parents[2]


def test_it_puts_a_csrf_token_in_every_post_form():
    templates = [*ROOT.glob("templates/**/*.html"), *ROOT.glob("hub/*/templates/**/*.html")]
    forms = 0
    for template in templates:
        for form in re.findall(r"<form[^>]*>.*?</form>", template.read_text(), re.S | re.I):
            if re.search(r'method="post"', form, re.I):
                forms += 1
                assert "{% csrf_token %}" in form, (
                    f"{template.relative_to(ROOT)}: a POST form without {{% csrf_token %}}"
                )
    assert forms >= 6  # login, logout, tokens, revoke, new job, cancel, retry


@pytest.fixture
def job(catalog, alice) -> Job:
    return Job.submit(
        base_model=catalog.llama, recipes=[Recipe.for_preset("w4a16")], owner=alice, suite="", benchmark_profile=""
    )


def test_it_refuses_every_form_post_without_the_csrf_token(catalog, alice, job):
    token, _ = ApiToken.issue(alice, "keep")
    stage = job.stages.get(kind="fetch")
    jobs = Job.objects.count()
    browser = Client(enforce_csrf_checks=True)
    assert browser.post("/accounts/login/", {"username": "alice", "password": "alice-password-1"}).status_code == 403
    browser.force_login(alice)
    posts = {
        "/tokens/": {"name": "sneaky", "scope": "write"},
        f"/tokens/{token.pk}/revoke/": {},
        "/jobs/new/": {"base": catalog.llama.pk, "presets": "w4a16", "revision": "main"},
        f"/jobs/{job.pk}/cancel/": {},
        f"/jobs/{job.pk}/stages/{stage.pk}/retry/": {},
        "/accounts/logout/": {},
    }
    for url, data in posts.items():
        assert browser.post(url, data).status_code == 403, url
    assert list(ApiToken.objects.filter(user=alice).values_list("name", "revoked_at")) == [("keep", None)]
    assert Job.objects.count() == jobs and not Job.objects.get(pk=job.pk).cancel_requested
    assert browser.get("/tokens/").status_code == 200  # still signed in: logout was refused too

    # the same post with the token the page carries goes through
    page = browser.get("/tokens/").content.decode()
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    assert browser.post(f"/tokens/{token.pk}/revoke/", {"csrfmiddlewaretoken": csrf}).status_code == 302
    assert ApiToken.objects.get(pk=token.pk).revoked_at is not None


def test_it_hides_private_jobs_from_others_in_the_api(client, catalog, alice, bob):
    private = Job.submit(
        base_model=catalog.private,
        recipes=[Recipe.for_preset("w4a16")],
        owner=alice,
        suite="",
        benchmark_profile="",
        private=True,
    )
    bob_token = ApiToken.issue(bob, "bob", ApiToken.Scope.WRITE)[1]
    for headers in ({}, {"HTTP_AUTHORIZATION": f"Bearer {bob_token}"}):
        for method, url in (
            ("get", f"/api/v1/jobs/{private.pk}"),
            ("post", f"/api/v1/jobs/{private.pk}/cancel"),
            ("post", f"/api/v1/jobs/{private.pk}/retry"),
        ):
            response = getattr(client, method)(url, content_type="application/json", **headers)
            assert response.status_code in ((401,) if method == "post" and not headers else (404,)), (url, headers)
        assert private.pk not in [j["id"] for j in client.get("/api/v1/jobs?page_size=500", **headers).json()["items"]]
    missing = client.get("/api/v1/jobs/999999", HTTP_AUTHORIZATION=f"Bearer {bob_token}").json()
    hidden = client.get(f"/api/v1/jobs/{private.pk}", HTTP_AUTHORIZATION=f"Bearer {bob_token}").json()
    assert hidden == missing  # nothing tells a hidden job from a missing one
    assert not Job.objects.get(pk=private.pk).cancel_requested
    alice_token = ApiToken.issue(alice, "alice")[1]
    assert client.get(f"/api/v1/jobs/{private.pk}", HTTP_AUTHORIZATION=f"Bearer {alice_token}").status_code == 200


def test_it_hides_the_results_of_private_variants(client, catalog, bob):
    from hub.results.models import EvalRun

    EvalRun.objects.create(
        variant=catalog.secret, suite="quick", suite_version="1", engine_version="0.1", settings_key="k"
    )
    bob_token = ApiToken.issue(bob, "bob")[1]
    for headers in ({}, {"HTTP_AUTHORIZATION": f"Bearer {bob_token}"}):
        runs = client.get(f"/api/v1/results/evals?variant={catalog.secret.pk}", **headers).json()
        assert runs["count"] == 0


def test_it_never_echoes_a_token_in_errors_or_logs(client, catalog, alice, caplog):
    caplog.set_level(logging.DEBUG)
    token, plaintext = ApiToken.issue(alice, "soon revoked", ApiToken.Scope.WRITE)
    read_plaintext = ApiToken.issue(alice, "read")[1]
    token.revoke()
    answers = [
        client.get("/api/v1/models", HTTP_AUTHORIZATION=f"Bearer {plaintext}"),
        client.post(
            "/api/v1/jobs",
            {"base": catalog.llama.pk},
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {read_plaintext}",
        ),
        client.get("/api/models/org/none", HTTP_AUTHORIZATION=f"Bearer {plaintext}"),
        client.post(
            "/api/repos/create",
            {"name": "x"},
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {plaintext}",
        ),
        client.get("/api/whoami-v2", HTTP_AUTHORIZATION=f"Bearer {plaintext}"),
    ]
    assert [a.status_code for a in answers] == [401, 403, 401, 401, 401]
    for answer in answers:
        text = answer.content.decode() + str(answer.headers)
        assert plaintext not in text and read_plaintext not in text and plaintext[:12] not in text
    assert plaintext not in caplog.text and read_plaintext not in caplog.text


def database_down(*args, **kwargs):
    raise DatabaseError("the database went away")


def debug_page(request) -> str:
    """Django's DEBUG error page for an exception raised while the request's token is checked:
    the token is then a local variable of the frames the page shows."""
    try:
        bearer_token(request)
    except DatabaseError:
        return ExceptionReporter(request, *sys.exc_info()).get_traceback_html()
    raise AssertionError("the token check did not fail")


def test_it_keeps_secrets_out_of_the_debug_error_page(settings, alice, monkeypatch):
    """With DEBUG on (the default for a local hub) Django's error page lists settings, the request
    and every frame's variables: tokens and keys are masked in all three."""
    settings.HF_TOKEN, settings.PUBLISH_HF_TOKEN = ("hf_" + secrets.token_urlsafe(16) for _ in range(2))
    request = RequestFactory().get("/api/v1/models", HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(alice, 'x')[1]}")
    monkeypatch.setattr(ApiToken.objects, "select_related", database_down)
    html = debug_page(request)
    assert "the database went away" in html and "PUBLISH_HF_TOKEN" in html and "plaintext" in html
    plaintext = request.headers["Authorization"].split()[1]
    for secret in (settings.HF_TOKEN, settings.PUBLISH_HF_TOKEN, plaintext, django_settings.SECRET_KEY):
        assert secret not in html
