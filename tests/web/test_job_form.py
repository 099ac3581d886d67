"""The submission form refuses what cannot work, with messages that say why, before any worker runs."""

import pytest
from django.core.management import call_command

from hub.catalog.models import BaseModel
from hub.jobs.forms import KNOWN_MODIFIERS
from hub.jobs.models import Job, Recipe

GOOD_YAML = """
quant_stage:
  quant_modifiers:
    GPTQModifier: {targets: [Linear], ignore: [lm_head], scheme: W4A16}
"""


@pytest.fixture
def signed_in(client, alice):
    client.force_login(alice)
    return client


def post(client, **fields):
    data = {"revision": "main", "suite": "", "benchmark_profile": "", **fields}
    return client.post("/jobs/new/", data)


def errors(response) -> str:
    assert response.status_code == 200, "the form was accepted"
    return response.content.decode()


def test_it_needs_a_signed_in_user(client, catalog):
    assert client.get("/jobs/new/")["Location"].startswith("/accounts/login/")
    assert client.post("/jobs/new/", {"base": catalog.llama.pk, "presets": "w4a16"}).status_code == 302
    assert not Job.objects.exclude(pk=catalog.job.pk).exists()


def test_it_submits_a_job_with_its_stage_graph(signed_in, catalog, alice):
    response = post(
        signed_in, base=catalog.llama.pk, presets=["w4a16", "w8a16"], suite="quick", benchmark_profile="single-stream"
    )
    job = Job.objects.exclude(pk=catalog.job.pk).get()
    assert response["Location"] == f"/jobs/{job.pk}/"
    assert job.owner == alice and job.suite == "quick" and job.benchmark_profile == "single-stream"
    kinds = sorted(job.stages.values_list("kind", flat=True))
    assert kinds == sorted(["fetch", "baseline"] + ["compress", "validate", "benchmark", "publish"] * 2)


def test_it_saves_a_pasted_recipe_as_a_new_version(signed_in, catalog):
    post(signed_in, base=catalog.llama.pk, recipe_yaml=GOOD_YAML, recipe_name="mine")
    post(signed_in, base=catalog.llama.pk, recipe_yaml=GOOD_YAML, recipe_name="mine", rerun="on")
    recipes = Recipe.objects.filter(name="mine").order_by("version")
    assert [(r.version, r.scheme, r.preset) for r in recipes] == [(1, "W4A16", False), (2, "W4A16", False)]
    assert "GPTQModifier" in recipes[0].yaml


def test_it_creates_a_pending_base_for_a_hub_id(signed_in, catalog):
    response = post(signed_in, hf_id="HuggingFaceTB/SmolLM2-135M", presets="w4a16")
    base = BaseModel.objects.get(hf_repo_id="HuggingFaceTB/SmolLM2-135M")
    assert response.status_code == 302 and base.status == BaseModel.Status.PENDING and base.revision == "main"
    # offline, the Hub cannot be asked: the job is accepted and the fetch stage checks
    follow = signed_in.get(response["Location"])
    assert "the fetch stage will check it" in follow.content.decode()


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"presets": "w4a16"}, "choose an imported model or give a Hugging Face id"),
        ({"hf_id": "org/x", "presets": "w4a16", "base": "BASE"}, "not both"),
        ({"hf_id": "../etc/passwd", "presets": "w4a16"}, "invalid model name"),
        ({"base": "BASE"}, "choose at least one recipe preset, or paste a recipe"),
        (
            {"base": "BASE", "presets": "fp8-dynamic", "gpu": "8.0"},
            "fp8-dynamic needs compute capability 8.9 or newer; the target GPU is 8.0 (A100, A30)",
        ),
        ({"base": "BASE", "presets": "2of4", "gpu": "7.5"}, "2of4 needs compute capability 8 or newer"),
        ({"base": "BASE", "recipe_yaml": "a: [unclosed"}, "the recipe is not valid YAML"),
        ({"base": "BASE", "recipe_yaml": "- just\n- a list"}, "must be a mapping of `&lt;name&gt;_stage:` entries"),
        ({"base": "BASE", "recipe_yaml": "quant:\n  x: 1"}, "top-level key &#x27;quant&#x27; is not a stage"),
        (
            {"base": "BASE", "recipe_yaml": "q_stage:\n  q_modifiers:\n    FancyModifier: {}"},
            "unknown modifier &#x27;FancyModifier&#x27;",
        ),
        (
            {
                "base": "BASE",
                "recipe_yaml": "q_stage:\n  q_modifiers:\n    QuantizationModifier: {scheme: FP8_DYNAMIC}",
                "gpu": "8.6",
            },
            "the recipe&#x27;s FP8_DYNAMIC needs compute capability 8.9",
        ),
        ({"base": "BASE", "presets": "w4a16", "benchmark_profile": "marathon"}, "Select a valid choice"),
        ({"base": "BASE", "presets": "w4a16", "publish_targets": "https://hf.example ../up"}, "invalid model name"),
    ],
)
def test_it_refuses_impossible_combinations(signed_in, catalog, fields, message):
    fields = {k: (catalog.llama.pk if v == "BASE" else v) for k, v in fields.items()}
    assert message in errors(post(signed_in, **fields))
    assert not Job.objects.exclude(pk=catalog.job.pk).exists()


def test_it_refuses_an_unsupported_architecture(signed_in, catalog):
    catalog.qwen.architecture = "GPT2LMHeadModel"
    catalog.qwen.save()
    assert "is a GPT2LMHeadModel; supported architectures: LlamaForCausalLM" in errors(
        post(signed_in, base=catalog.qwen.pk, presets="w4a16")
    )


def test_it_refuses_pickle_only_weights(signed_in, catalog):
    catalog.qwen.files = [{"path": "pytorch_model.bin", "size": 10, "sha256": "0" * 64}]
    catalog.qwen.save()
    assert "has no safetensors weights (pickle files are refused" in errors(
        post(signed_in, base=catalog.qwen.pk, presets="w4a16")
    )


def test_it_refuses_a_group_preset_the_bases_widths_cannot_take(signed_in, catalog, fixtures_dir):
    """stories260k's widths are 64 and 172: no group of 128, 64 or 32 divides 172, so W4A16 would
    fail in compress after fetch and baseline had run; per-channel W8A8 fits any width."""
    call_command("import_model", str(fixtures_dir / "models" / "stories260k"))
    narrow = BaseModel.objects.get(name="stories260k")
    message = errors(post(signed_in, base=narrow.pk, presets=["w4a16", "w8a8-int8"]))
    assert (
        "w4a16 cannot quantize stories260k: no group size it may use (128, 64, 32) divides all its Linear input "
        "widths (64, 172)" in message
    )
    assert "w8a8-int8 cannot" not in message and "choose at least one recipe preset" not in message
    assert post(signed_in, base=narrow.pk, presets="w8a8-int8").status_code == 302
    assert post(signed_in, base=catalog.llama.pk, presets="w4a16").status_code == 302


def test_it_accepts_fp8_without_a_gpu_target_or_on_a_new_enough_one(signed_in, catalog):
    assert post(signed_in, base=catalog.llama.pk, presets="fp8-dynamic").status_code == 302
    assert post(signed_in, base=catalog.llama.pk, presets="fp8-dynamic", gpu="9.0", rerun="on").status_code == 302


def test_it_offers_only_models_the_user_may_see(client, catalog, bob):
    client.force_login(bob)
    assert "Select a valid choice" in errors(post(client, base=catalog.private.pk, presets="w4a16"))


def test_it_knows_the_modifiers_the_compression_library_implements():
    from compress.recipe import _PARSERS

    assert set(KNOWN_MODIFIERS) == set(_PARSERS)


def test_it_answers_an_identical_submission_with_a_link_to_the_job_that_runs_it(signed_in, catalog):
    fields = dict(base=catalog.llama.pk, presets=["w4a16", "w8a16"], suite="quick")
    first = Job.objects.get(pk=post(signed_in, **fields)["Location"].split("/")[-2])
    page = errors(post(signed_in, **{**fields, "presets": ["w8a16", "w4a16"]}))
    assert f"job {first.pk} (queued) already runs this" in page
    assert f'<a href="/jobs/{first.pk}/">job {first.pk}</a>' in page
    assert Job.objects.exclude(pk=catalog.job.pk).count() == 1
    # what differs is not a duplicate: another profile, or a recipe of other content
    assert post(signed_in, **fields, benchmark_profile="chat").status_code == 302
    assert post(signed_in, base=catalog.llama.pk, recipe_yaml=GOOD_YAML, recipe_name="a").status_code == 302
    assert "already runs this" in errors(post(signed_in, base=catalog.llama.pk, recipe_yaml=GOOD_YAML, recipe_name="b"))
    # a failed job is no duplicate: running it again is what the user wants
    first.status = Job.Status.FAILED
    first.save()
    assert post(signed_in, **fields).status_code == 302


def test_it_runs_an_identical_job_again_when_asked_and_says_so(signed_in, catalog):
    fields = dict(base=catalog.llama.pk, presets="w4a16")
    first = post(signed_in, **fields)["Location"]
    again = post(signed_in, **fields, rerun="on")
    assert again.status_code == 302 and again["Location"] != first
    job = Job.objects.get(pk=again["Location"].split("/")[-2])
    assert job.rerun_of_id == int(first.split("/")[-2])
    assert (
        f'Re-run of</dt><dd><a href="{first}">job {job.rerun_of_id}</a>'
        in signed_in.get(again["Location"]).content.decode()
    )


def test_it_does_not_reveal_another_users_private_job_as_a_duplicate(client, catalog, alice, bob):
    client.force_login(bob)
    post(client, base=catalog.llama.pk, presets="w4a16", private="on")
    client.force_login(alice)
    assert post(client, base=catalog.llama.pk, presets="w4a16").status_code == 302
