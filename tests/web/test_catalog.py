"""The catalog page: bases with their variant trees, filters, sorts, and who sees what."""

import re

import pytest

from hub.catalog.models import Variant


def names(response) -> list[str]:
    return re.findall(r'data-name="([^"]+)"', response.content.decode())


def test_it_lists_bases_with_their_variants_as_a_tree(client, catalog):
    response = client.get("/")
    assert response.status_code == 200
    html = response.content.decode()
    assert set(names(response)) == {
        "org/qwen-7b",
        "org/llama-1b",
        "org/llama-1b-w4a16-gptq",
        "org/llama-1b-fp8-dynamic",
    }
    assert html.index("org/llama-1b-w4a16-gptq") > html.index('data-name="org/llama-1b"')
    assert "validated" in html and "recovery 97.6%" in html  # the worst task's recovery
    assert "speedup 1.50x" in html  # 1200 / 800 output tokens/s in the same stage
    assert "no variants yet" in html  # qwen
    assert "recovery not measured" in html  # fp8 has no validation yet


def test_it_hides_private_models_from_others(client, catalog, alice, bob, staff):
    assert "alice/secret-model" not in names(client.get("/"))
    client.force_login(bob)
    assert "alice/secret-model" not in names(client.get("/"))
    client.force_login(alice)
    assert {"alice/secret-model", "alice/secret-model-w8a16"} <= set(names(client.get("/")))
    client.force_login(staff)
    assert "alice/secret-model" in names(client.get("/"))


@pytest.mark.parametrize(
    "query, shown, hidden",
    [
        (
            "scheme=FP8_DYNAMIC",
            ["org/llama-1b", "org/llama-1b-fp8-dynamic"],
            ["org/llama-1b-w4a16-gptq", "org/qwen-7b"],
        ),
        ("validated=on", ["org/llama-1b-w4a16-gptq"], ["org/llama-1b-fp8-dynamic", "org/qwen-7b"]),
        ("gpu=8.0", ["org/llama-1b-w4a16-gptq"], ["org/llama-1b-fp8-dynamic"]),
        ("gpu=9.0", ["org/llama-1b-w4a16-gptq", "org/llama-1b-fp8-dynamic"], []),
        ("task=hellaswag", ["org/llama-1b-w4a16-gptq"], ["org/llama-1b-fp8-dynamic"]),
        ("architecture=Qwen2ForCausalLM", ["org/qwen-7b"], ["org/llama-1b"]),
        ("size=3-8b", ["org/qwen-7b"], ["org/llama-1b"]),
        ("size=1-3b", ["org/llama-1b"], ["org/qwen-7b"]),
        ("q=qwen", ["org/qwen-7b"], ["org/llama-1b"]),
        ("q=gptq", ["org/llama-1b"], ["org/qwen-7b"]),
    ],
)
def test_it_filters(client, catalog, query, shown, hidden):
    listed = names(client.get(f"/?{query}"))
    assert set(shown) <= set(listed), listed
    assert not set(hidden) & set(listed), listed


@pytest.mark.parametrize(
    "sort, first",
    [("recovery", "org/llama-1b"), ("speedup", "org/llama-1b"), ("size", "org/llama-1b"), ("newest", "org/qwen-7b")],
)
def test_it_sorts(client, catalog, sort, first):
    assert names(client.get(f"/?sort={sort}"))[0] == first


def test_it_orders_variants_within_a_base_by_the_sort(client, catalog):
    listed = names(client.get("/?sort=size"))
    assert listed.index("org/llama-1b-w4a16-gptq") < listed.index("org/llama-1b-fp8-dynamic")


def test_it_answers_htmx_with_the_results_fragment_only(client, catalog):
    response = client.get("/?scheme=W4A16", HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert "<html" not in html and 'data-name="org/llama-1b-w4a16-gptq"' in html


def test_it_paginates(client, catalog, settings):
    settings.CATALOG_PAGE_SIZE = 1
    first, second = client.get("/"), client.get("/?page=2")
    assert "page 1 of 2" in first.content.decode()
    assert names(first)[0] != names(second)[0]


def test_it_ignores_an_unknown_filter_value(client, catalog):
    assert client.get("/?sort=bogus&gpu=99").status_code == 200


def test_it_keeps_the_rendered_list_a_few_seconds_per_audience(client, catalog, bob, settings):
    settings.CATALOG_CACHE_SECONDS = 10
    assert "org/llama-1b-w4a16-gptq" in names(client.get("/?scheme=W4A16"))
    Variant.objects.filter(pk=catalog.w4.pk).update(name="org/renamed")
    assert "org/llama-1b-w4a16-gptq" in names(client.get("/?scheme=W4A16"))  # kept
    client.force_login(bob)
    assert "org/renamed" in names(client.get("/?scheme=W4A16"))  # another audience, its own copy
    client.logout()
    settings.CATALOG_CACHE_SECONDS = 0
    assert "org/renamed" in names(client.get("/?scheme=W4A16"))
