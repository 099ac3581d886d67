"""The benchmark stage's measurement on a GPU: a Llama-3.1-8B-shaped model with random weights,
dense bf16 and the same model as compressed-tensors W4A16 (pack-quantized, symmetric, group
128), W8A8 (int-quantized per-channel weights, dynamic per-token int8 activations) and
FP8_DYNAMIC (float-quantized per-channel weights, dynamic per-token activations) checkpoints,
one after the other in one process on a workload profile (the concurrency sweep by default),
with `engine.bench.measure`. Random weights run exactly as fast as trained ones
(greedy, `ignore_eos`, fixed lengths); a scheme the engine or the GPU cannot run is reported as
such. Prints one table per variant against bf16 and writes every measurement as JSON.

    python3 -m bench.benchmark_sweep --dir /dev/shm/sweep [--schemes bf16,w4a16,w8a8,fp8] [--scale 1] \
        [--profile sweep] [--layers 32] [--json OUT.json]
"""

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from bench.engine_gpu import LLAMA_31_8B
from bench.engine_gpu import write_checkpoint as write_dense
from engine.bench import measure
from engine.hardware import describe_hardware
from engine.metrics import format_table, speedup
from engine.profiles import get_profile

_GROUPS = {
    "w4a16": {
        "format": "pack-quantized",
        "targets": ["Linear"],
        "input_activations": None,
        "weights": {
            "num_bits": 4,
            "type": "int",
            "symmetric": True,
            "strategy": "group",
            "group_size": 128,
            "dynamic": False,
        },
    },
    "w8a8": {
        "format": "int-quantized",
        "targets": ["Linear"],
        "weights": {"num_bits": 8, "type": "int", "symmetric": True, "strategy": "channel", "dynamic": False},
        "input_activations": {"num_bits": 8, "type": "int", "symmetric": True, "strategy": "token", "dynamic": True},
    },
    "fp8": {
        "format": "float-quantized",
        "targets": ["Linear"],
        "weights": {"num_bits": 8, "type": "float", "symmetric": True, "strategy": "channel", "dynamic": False},
        "input_activations": {"num_bits": 8, "type": "float", "symmetric": True, "strategy": "token", "dynamic": True},
    },
}
_SCHEME_NAMES = {"bf16": "dense", "w4a16": "W4A16", "w8a8": "W8A8", "fp8": "FP8_DYNAMIC"}


def quantized_linear(scheme: str, prefix: str, n: int, k: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    dev = gen.device
    if scheme == "w4a16":  # random nibbles: q uniform in [-8, 7] once the +8 offset is taken off
        return {
            f"{prefix}.weight_packed": torch.randint(
                -(2**31), 2**31 - 1, (n, k // 8), dtype=torch.int32, device=dev, generator=gen
            ),
            f"{prefix}.weight_scale": torch.full((n, k // 128), 0.02 / 4, dtype=torch.bfloat16, device=dev),
            f"{prefix}.weight_shape": torch.tensor([n, k], dtype=torch.int64, device=dev),
        }
    if scheme == "w8a8":
        return {
            f"{prefix}.weight": torch.randint(-127, 128, (n, k), dtype=torch.int8, device=dev, generator=gen),
            f"{prefix}.weight_scale": torch.full((n, 1), 0.02 / 64, dtype=torch.bfloat16, device=dev),
        }
    return {
        f"{prefix}.weight": torch.randn(n, k, device=dev, generator=gen).to(torch.float8_e4m3fn),
        f"{prefix}.weight_scale": torch.full((n, 1), 0.02, dtype=torch.bfloat16, device=dev),
    }


def write_quantized(out: Path, scheme: str, shape: dict, device: str = "cuda", seed: int = 0) -> Path:
    """The Llama shape of bench.engine_gpu as a compressed-tensors checkpoint: random quantized
    projections, random bf16 embeddings and LM head, unit norms; one shard per layer."""
    from transformers import LlamaConfig

    LlamaConfig(**shape, architectures=["LlamaForCausalLM"], dtype="bfloat16").save_pretrained(out)
    config = json.loads((out / "config.json").read_text())
    config["quantization_config"] = {
        "quant_method": "compressed-tensors",
        "format": _GROUPS[scheme]["format"],
        "quantization_status": "compressed",
        "config_groups": {"group_0": _GROUPS[scheme]},
        "ignore": ["lm_head"],
        "sparsity_config": {},
    }
    (out / "config.json").write_text(json.dumps(config, indent=2))
    gen = torch.Generator(device).manual_seed(seed)
    h, i, v = shape["hidden_size"], shape["intermediate_size"], shape["vocab_size"]
    kv = shape["num_key_value_heads"] * shape["head_dim"]
    weight_map = {}

    def save(name: str, tensors: dict[str, torch.Tensor]) -> None:
        save_file({k: t.contiguous().cpu() for k, t in tensors.items()}, str(out / name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(tensors, name))

    bf16 = lambda *size: (0.02 * torch.randn(*size, device=device, generator=gen)).bfloat16()  # noqa: E731
    ones = lambda: torch.ones(h, dtype=torch.bfloat16)  # noqa: E731
    save(
        "embed.safetensors",
        {"model.embed_tokens.weight": bf16(v, h), "model.norm.weight": ones(), "lm_head.weight": bf16(v, h)},
    )
    for n in range(shape["num_hidden_layers"]):
        p = f"model.layers.{n}"
        tensors = {f"{p}.input_layernorm.weight": ones(), f"{p}.post_attention_layernorm.weight": ones()}
        for name, rows, cols in (
            ("self_attn.q_proj", h, h),
            ("self_attn.k_proj", kv, h),
            ("self_attn.v_proj", kv, h),
            ("self_attn.o_proj", h, h),
            ("mlp.gate_proj", i, h),
            ("mlp.up_proj", i, h),
            ("mlp.down_proj", h, i),
        ):
            tensors.update(quantized_linear(scheme, f"{p}.{name}", rows, cols, gen))
        save(f"layer{n:02d}.safetensors", tensors)
    (out / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", type=Path, required=True, help="where the random checkpoints are written")
    p.add_argument("--schemes", default="bf16,w4a16,fp8")
    p.add_argument("--profile", default="sweep")
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--layers", type=int, default=32)
    p.add_argument("--max-model-len", type=int, default=8192)
    p.add_argument("--json", type=Path)
    args = p.parse_args()

    profile = get_profile(args.profile).scaled(args.scale)
    results = []
    for scheme in args.schemes.split(","):
        t = time.monotonic()
        shape = {**LLAMA_31_8B, "num_hidden_layers": args.layers}
        out = args.dir / f"llama31-8b-shaped-{scheme}"
        out.mkdir(parents=True, exist_ok=True)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        model = write_dense(out, shape, device) if scheme == "bf16" else write_quantized(out, scheme, shape, device)
        print(f"wrote {model.name} in {time.monotonic() - t:.0f} s", file=sys.stderr, flush=True)
        t = time.monotonic()
        dtype = results[0].settings["dtype"] if results and results[0].runnable else "bfloat16"
        results.append(
            measure(model, profile, scheme=_SCHEME_NAMES[scheme], dtype=dtype, max_model_len=args.max_model_len)
        )
        print(f"measured {model.name} in {time.monotonic() - t:.0f} s", file=sys.stderr, flush=True)
        shutil.rmtree(out)
        if args.json:  # after each model, so a run cut short keeps what it measured
            args.json.write_text(
                json.dumps(
                    {
                        "hardware": describe_hardware(),
                        "models": [{"model": r.model, **r.summary()} for r in results],
                        "speedup": {
                            r.model: speedup(results[0].metrics, r.metrics)
                            for r in results[1:]
                            if r.runnable and results[0].runnable
                        },
                    },
                    indent=2,
                )
            )
    print(json.dumps(describe_hardware()))
    for variant in results[1:]:
        print(format_table([results[0], variant]) + "\n")
    if len(results) == 1:
        print(format_table(results))


if __name__ == "__main__":
    main()
