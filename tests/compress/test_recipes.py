"""Recipes: presets, llm-compressor YAML (including its serialized recipe.yaml), clear errors."""

import pytest
import yaml

from compress import PRESETS, compress, load_recipe
from compress.recipe import QuantizeStep, SmoothStep

# what llm-compressor 0.14 writes as recipe.yaml for SmoothQuant + GPTQ W8A8 (Recipe.yaml())
SERIALIZED_BY_LLM_COMPRESSOR = """
default_stage:
  default_modifiers:
    SmoothQuantModifier: {requires_calibration_data: true, smoothing_strength: 0.8, algorithm: smoothquant}
    GPTQModifier:
      targets: [Linear]
      ignore: [lm_head]
      scheme: W8A8
      bypass_divisibility_checks: false
      requires_calibration_data: true
      block_size: 128
      dampening_frac: 0.01
      actorder: static
      batched_quantization: auto
"""


def test_it_parses_every_preset_into_the_documented_algorithms():
    kinds = {name: [(type(s).__name__, s.algorithm) for s in load_recipe(name).steps] for name in PRESETS}
    assert kinds["w4a16"] == [("QuantizeStep", "rtn")]
    assert kinds["w4a16-gptq"] == [("QuantizeStep", "gptq")]
    assert kinds["w4a16-awq"] == [("SmoothStep", "awq"), ("QuantizeStep", "rtn")]
    assert kinds["w8a8-int8"] == [("SmoothStep", "smoothquant"), ("QuantizeStep", "gptq")]
    assert kinds["fp8-dynamic"] == [("QuantizeStep", "rtn")]
    assert kinds["fp8-gptq"] == [("QuantizeStep", "gptq")]
    assert kinds["2of4"] == [("PruneStep", "sparsegpt")]
    assert kinds["2of4-magnitude"] == [("PruneStep", "magnitude")]
    assert kinds["2of4-w4a16"] == [("PruneStep", "sparsegpt"), ("QuantizeStep", "gptq")]
    w = load_recipe("w4a16-gptq").steps[0].schemes[0].weights
    assert (w.num_bits, w.symmetric, w.strategy, w.group_size, w.actorder) == (4, True, "group", 128, "static")
    assert load_recipe("w4a16-asym").steps[0].schemes[0].weights.symmetric is False
    for name in ("fp8-dynamic", "fp8-gptq"):
        fp8 = load_recipe(name).steps[0].schemes[0]
        assert (fp8.weights.type, fp8.weights.strategy, fp8.input_activations.strategy) == ("float", "channel", "token")
    step = load_recipe("2of4").steps[0]
    assert (step.n, step.m, step.structure) == (2, 4, "2:4")


def test_it_reads_a_recipe_llm_compressor_serialized(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text(SERIALIZED_BY_LLM_COMPRESSOR)
    for source in (path, str(path), SERIALIZED_BY_LLM_COMPRESSOR):
        smooth, gptq = load_recipe(source).steps
        assert isinstance(smooth, SmoothStep) and smooth.smoothing_strength == 0.8
        assert isinstance(gptq, QuantizeStep) and gptq.algorithm == "gptq" and gptq.actorder
        assert gptq.schemes[0].input_activations.dynamic is True


def test_it_reads_config_groups_and_the_older_quantizing_awq_modifier():
    recipe = load_recipe("""
quant_stage:
  run_type: oneshot
  quant_modifiers:
    AWQModifier:
      ignore: [lm_head]
      duo_scaling: both
      config_groups:
        group_0:
          targets: [Linear]
          weights: {num_bits: 4, type: int, symmetric: false, strategy: group, group_size: 32}
""")
    awq, rtn = recipe.steps
    assert awq.duo_scaling == "both" and rtn.algorithm == "rtn"
    assert rtn.schemes[0].weights.group_size == 32 and not rtn.schemes[0].weights.symmetric


@pytest.mark.parametrize(
    "text, error, words",
    [
        (
            "s_stage:\n  m_modifiers:\n    WandaPruningModifier: {sparsity: 0.5}\n",
            ValueError,
            ["WandaPruningModifier", "supported"],
        ),
        ("s_stage:\n  m_modifiers:\n    GPTQModifier: {scheme: W4A16, blocksize: 64}\n", ValueError, ["blocksize"]),
        (
            "s_stage:\n  m_modifiers:\n    GPTQModifier: {scheme: W4A16, actorder: group}\n",
            NotImplementedError,
            ["weight_g_idx"],
        ),
        (
            "s_stage:\n  m_modifiers:\n    QuantizationModifier:\n      config_groups: {g: {targets: [Linear], weights: {num_bits: 8, "
            "type: int, strategy: channel}, input_activations: {num_bits: 8, type: int, strategy: tensor, "
            "dynamic: false, symmetric: false}}}\n",
            NotImplementedError,
            ["must be symmetric"],
        ),
        (
            "s_stage:\n  m_modifiers:\n    QuantizationModifier: {scheme: NVFP4}\n",
            NotImplementedError,
            ["FP4 activations"],
        ),
        ("s_stage:\n  m_modifiers:\n    QuantizationModifier: {scheme: W5A5}\n", ValueError, ["W5A5"]),
        (
            "s_stage:\n  m_modifiers:\n    GPTQModifier: {scheme: W4A16, kv_cache_scheme: {num_bits: 8}}\n",
            NotImplementedError,
            ["kv_cache_scheme"],
        ),
        (
            "s_stage:\n  m_modifiers:\n    QuantizationModifier:\n      config_groups:\n        g: {targets: [Linear], weights: {num_bits: 4, group_sise: 8}}\n",
            ValueError,
            ["group_sise"],
        ),
        ("s_stage:\n  m_modifiers:\n    AWQModifier: {}\n", ValueError, ["follow it"]),
        (
            "s_stage:\n  m_modifiers:\n    SparseGPTModifier: {sparsity: 0.7, mask_structure: '2:4'}\n",
            ValueError,
            ["contradicts"],
        ),
        (
            "s_stage:\n  m_modifiers:\n    MagnitudePruningModifier: {targets: [Linear], init_sparsity: 0.1, final_sparsity: 0.5}\n",
            NotImplementedError,
            ["one-shot"],
        ),
        (
            "a_stage:\n  a_modifiers:\n    QuantizationModifier: {scheme: W4A16}\nb_stage:\n  b_modifiers:\n    SparseGPTModifier: {sparsity: 0.5, mask_structure: '2:4'}\n",
            NotImplementedError,
            ["after quantization"],
        ),
        ("GPTQModifier: {scheme: W4A16}\n", ValueError, ["stage"]),
        ("not-a-preset", ValueError, ["preset", "w4a16-gptq"]),
    ],
)
def test_it_names_what_it_rejects(text, error, words):
    with pytest.raises(error) as e:
        load_recipe(text)
    assert all(w in str(e.value) for w in words), str(e.value)


def test_a_preset_falls_back_to_a_group_size_that_divides_and_the_written_recipe_says_so(make_model, tmp_path):
    model = make_model(hidden=192, intermediate=384)  # 192 = 1.5 x 128
    report = compress(model, "w4a16", tmp_path / "out")
    assert report.scheme == "W4A16 (group_size 64)" and "used group_size 64" in report.notes[0]
    written = yaml.safe_load((tmp_path / "out" / "recipe.yaml").read_text())
    args = written["default_stage"]["default_modifiers"]["QuantizationModifier"]
    assert args["config_groups"]["group_0"]["weights"]["group_size"] == 64 and "scheme" not in args
    # the written recipe reproduces the run; a recipe that asks for group 128 outright is refused
    again = compress(model, tmp_path / "out" / "recipe.yaml", tmp_path / "again")
    assert [f for f in again.files if f["path"] == "model.safetensors"] == [
        f for f in report.files if f["path"] == "model.safetensors"
    ]
    with pytest.raises(ValueError, match="group_size 64"):
        compress(model, "d_stage:\n  d_modifiers:\n    QuantizationModifier: {scheme: W4A16}\n", tmp_path / "refused")
    assert not (tmp_path / "refused").exists()


def test_targets_and_ignore_are_honoured_and_lm_head_is_refused(make_model, tmp_path):
    model = make_model()
    only_mlp = "d_stage:\n  d_modifiers:\n    QuantizationModifier: {scheme: W8A16, targets: ['re:.*mlp.*'], ignore: ['re:.*down_proj']}\n"
    report = compress(model, only_mlp, tmp_path / "out")
    names = set(report.layers[0]["modules"])
    assert names == {"model.layers.0.mlp.gate_proj", "model.layers.0.mlp.up_proj"}
    with pytest.raises(NotImplementedError, match="lm_head"):
        compress(
            model, "d_stage:\n  d_modifiers:\n    QuantizationModifier: {scheme: W8A16, ignore: []}\n", tmp_path / "x"
        )


def test_it_implements_every_preset_the_hub_offers():
    from hub.jobs.presets import PRESETS as OFFERED

    assert sorted(PRESETS) == sorted(OFFERED)


def test_it_quantizes_in_the_groups_the_hub_checks_at_submission():
    """The hub refuses a preset whose groups (or FP8 blocks' widths) a base cannot take from its
    own copy of each preset's group size, without loading the library: the copy must say what
    the preset does."""
    from hub.jobs.presets import PRESETS as OFFERED

    for name, text in PRESETS.items():
        groups = {
            s.weights.block_structure[1] if s.weights.strategy == "block" else s.weights.group_size
            for step in load_recipe(text).steps
            for s in getattr(step, "schemes", [])
            if s.weights is not None and s.weights.strategy in ("group", "tensor_group", "block")
        }
        assert groups == ({OFFERED[name].group_size} - {None}), name
