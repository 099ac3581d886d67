"""Hostile bodies get a clear answer, never a server error or a traceback: YAML or JSON nested a
thousand deep is a 400 (or the form's error) that says how deep is allowed, and a body over the
hub's size limit is a 413 that says the limit, on the API, the web form and every other page."""

import json

import httpx2
import pytest
from django.conf import settings

from hub.jobs.models import Job
from tests.helpers import form_token, sign_in

DEEP_JSON = "[" * 1000 + "]" * 1000
DEEP_YAML = "s_stage:\n  m_modifiers:\n    GPTQModifier: {scheme: W4A16, targets: " + DEEP_JSON + "}\n"
TRACEBACK_SIGNS = ("Traceback", 'File "/', "site-packages", "RecursionError", "RequestDataTooBig")


def clean(answer: httpx2.Response) -> str:
    """The answer's text, once it is known to show no traceback, exception name or server path."""
    assert answer.status_code < 500, f"{answer.status_code}: {answer.text[:2000]}"
    assert not any(sign in answer.text for sign in TRACEBACK_SIGNS), answer.text[:2000]
    return answer.text


def api(url: str, token: str, body: bytes | str) -> httpx2.Response:
    return httpx2.post(
        f"{url}/api/v1/jobs",
        content=body,
        timeout=60,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )


def test_a_json_body_nested_a_thousand_deep_is_a_clear_400(hub, alice_token, llama):
    body = '{"base": %d, "presets": ["w4a16"], "publish_targets": %s}' % (llama.pk, DEEP_JSON)
    answer = api(hub.url, alice_token, body)
    assert answer.status_code == 400 and "nested more than" in clean(answer), answer.text
    assert answer.json()["error"]["code"] == "bad_request"
    assert not Job.objects.exists()


def test_a_recipe_nested_a_thousand_deep_is_refused_on_the_api_and_the_form(hub, alice, alice_token, llama):
    body = json.dumps({"base": llama.pk, "recipe_yaml": DEEP_YAML, "suite": "", "benchmark_profile": ""})
    answer = api(hub.url, alice_token, body)
    assert answer.status_code == 422 and "nested more than" in clean(answer), answer.text
    web = sign_in(hub.url, "alice", "alice-password-1")
    token = form_token(web.get("/jobs/new/").text)
    page = web.post(
        "/jobs/new/",
        data={
            "csrfmiddlewaretoken": token,
            "base": llama.pk,
            "recipe_yaml": DEEP_YAML,
            "revision": "main",
            "suite": "",
            "benchmark_profile": "",
        },
    )
    assert page.status_code == 200 and "nested more than" in clean(page)
    assert not Job.objects.exists()


def test_a_recipe_with_aliases_is_refused(hub, alice_token, llama):
    recipe = "s_stage: &s\n  m_modifiers:\n    GPTQModifier: {scheme: W4A16}\nt_stage: *s\n"
    body = json.dumps({"base": llama.pk, "recipe_yaml": recipe, "suite": "", "benchmark_profile": ""})
    answer = api(hub.url, alice_token, body)
    assert answer.status_code == 422 and "aliases" in clean(answer), answer.text


def test_a_recipe_longer_than_its_limit_is_refused(hub, alice_token, llama):
    recipe = "s_stage:\n  m_modifiers:\n    GPTQModifier: {scheme: W4A16}\n" + "#" * 70_000 + "\n"
    body = json.dumps({"base": llama.pk, "recipe_yaml": recipe, "suite": "", "benchmark_profile": ""})
    answer = api(hub.url, alice_token, body)
    assert answer.status_code == 422 and "at most 65536 characters" in clean(answer), answer.text


@pytest.mark.parametrize("where", ["api", "form", "login"])
def test_a_body_over_the_size_limit_is_a_413_that_says_the_limit(hub, alice, alice_token, llama, where):
    big = "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)
    if where == "api":
        answer = api(hub.url, alice_token, json.dumps({"base": llama.pk, "presets": ["w4a16"], "hf_id": big}))
        assert answer.json()["error"]["code"] == "too_large"
    else:
        web = sign_in(hub.url, "alice", "alice-password-1") if where == "form" else httpx2.Client(base_url=hub.url)
        path = "/jobs/new/" if where == "form" else "/accounts/login/"
        token = form_token(web.get(path).text)
        answer = web.post(path, data={"csrfmiddlewaretoken": token, "base": llama.pk, "recipe_yaml": big})
    assert answer.status_code == 413, answer.text[:2000]
    assert f"{settings.DATA_UPLOAD_MAX_MEMORY_SIZE // 1024 // 1024}" in clean(answer) or "MB" in answer.text
    assert not Job.objects.exists()
