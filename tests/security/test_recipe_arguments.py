"""A recipe's argument values are checked when it is submitted, and again when a worker parses it,
by the same function: every argument of every modifier has a type and a range, so an `n_grid` of
10^12 (AWQ builds a list that long), an infinity, a NaN or an unknown argument is refused by name
before a worker spends memory on it."""

import html

import httpx2
import pytest
from django.test import Client

from hub.jobs.models import Job, Recipe

AWQ = "s_stage:\n  m_modifiers:\n    AWQModifier: {{{args}}}\n    QuantizationModifier: {{scheme: W4A16}}\n"
SMOOTH = "s_stage:\n  m_modifiers:\n    SmoothQuantModifier: {{{args}}}\n    GPTQModifier: {{scheme: W8A8}}\n"
GPTQ = "s_stage:\n  m_modifiers:\n    GPTQModifier: {{scheme: W4A16, {args}}}\n"
SPARSE = "s_stage:\n  m_modifiers:\n    SparseGPTModifier: {{{args}}}\n"
GROUPS = (
    "s_stage:\n  m_modifiers:\n    QuantizationModifier:\n      config_groups:\n        g:\n"
    "          targets: [Linear]\n          weights: {{num_bits: 4, type: int, strategy: group, {args}}}\n"
)

# recipe, the argument the answer must name, and the range it must give
BAD = {
    "n_grid written 10^12": (AWQ.format(args="n_grid: 10^12"), "n_grid", "from 1 to 100"),
    "n_grid of 10^12": (AWQ.format(args=f"n_grid: {10**12}"), "n_grid", "from 1 to 100"),
    "smoothing_strength 1e400": (SMOOTH.format(args="smoothing_strength: 1e400"), "smoothing_strength", "from 0 to 1"),
    "smoothing_strength infinite": (SMOOTH.format(args="smoothing_strength: 1.0e+400"), "smoothing_strength", "finite"),
    "block_size written 10^30": (GPTQ.format(args="block_size: 10^30"), "block_size", "from 1 to 65536"),
    "block_size of 10^30": (GPTQ.format(args=f"block_size: {10**30}"), "block_size", "from 1 to 65536"),
    "dampening_frac NaN": (GPTQ.format(args="dampening_frac: .nan"), "dampening_frac", "finite number from 0 to 1"),
    "sparsity -inf": (SPARSE.format(args="sparsity: -.inf, mask_structure: '0:0'"), "sparsity", "from 0 to 1"),
    "unknown argument": (GPTQ.format(args="frobnicate: 1"), "frobnicate", "supported: "),
    "group_size of 10^12": (GROUPS.format(args=f"group_size: {10**12}"), "group_size", "from 1 to 65536"),
    "observer grid of 10^9": (
        GROUPS.format(args="group_size: 32, observer: mse, observer_kwargs: {grid: 1000000000}"),
        "grid",
        "from 1 to 1000",
    ),
    "unknown nested key": (GROUPS.format(args="group_size: 32, num_bitz: 4"), "num_bitz", "known: "),
}
GOOD = """
quant_stage:
  run_type: oneshot
  quant_modifiers:
    AWQModifier: {duo_scaling: both, n_grid: 10, mappings: [{smooth_layer: 're:.*input_layernorm$', balance_layers: ['re:.*q_proj$']}]}
    GPTQModifier:
      ignore: [lm_head]
      block_size: 64
      dampening_frac: 0.05
      actorder: static
      config_groups:
        group_0:
          targets: [Linear]
          weights: {num_bits: 4, type: int, symmetric: true, strategy: group, group_size: 32, observer: mse,
                    observer_kwargs: {grid: 50, maxshrink: 0.3}}
"""


def submit(url: str, token: str, base: int, recipe: str) -> httpx2.Response:
    body = {"base": base, "recipe_yaml": recipe, "recipe_name": "mine", "suite": "", "benchmark_profile": ""}
    return httpx2.post(f"{url}/api/v1/jobs", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=60)


def test_it_refuses_each_bad_value_on_the_api_naming_the_argument_and_its_range(hub, alice_token, llama):
    for case, (recipe, argument, allowed) in BAD.items():
        answer = submit(hub.url, alice_token, llama.pk, recipe)
        assert answer.status_code == 422, f"{case}: {answer.status_code} {answer.text}"
        assert argument in answer.text and allowed in answer.text, f"{case}: {answer.text}"
    assert not Job.objects.exists() and not Recipe.objects.filter(name="mine").exists()


def test_it_refuses_each_bad_value_on_the_web_form(alice, llama):
    web = Client()
    web.force_login(alice)
    for case, (recipe, argument, allowed) in BAD.items():
        answer = web.post("/jobs/new/", {"base": llama.pk, "recipe_yaml": recipe, "revision": "main"})
        page = html.unescape(answer.content.decode())
        assert answer.status_code == 200 and "errorlist" in page, f"{case}: the form was accepted"
        assert argument in page and allowed in page, f"{case}: {argument!r} / {allowed!r} not on the page"
    assert not Job.objects.exists()


def test_a_good_custom_recipe_is_still_accepted(hub, alice_token, llama):
    answer = submit(hub.url, alice_token, llama.pk, GOOD)
    assert answer.status_code == 201, answer.text
    assert answer.json()["recipes"] == ["mine v1"]


@pytest.mark.parametrize("case", BAD)
def test_the_worker_refuses_the_same_values_when_it_parses_the_recipe(case):
    from compress.recipe import load_recipe

    recipe, argument, allowed = BAD[case]
    with pytest.raises(ValueError) as refused:
        load_recipe(recipe)
    assert argument in str(refused.value) and allowed in str(refused.value), str(refused.value)


def test_the_worker_still_parses_the_good_recipe():
    from compress.recipe import load_recipe

    awq, gptq = load_recipe(GOOD).steps
    assert awq.n_grid == 10 and gptq.block_size == 64 and gptq.schemes[0].weights.observer_kwargs["grid"] == 50
