"""How much faster compressed models run than their base on this CPU, measured as the benchmark
stage measures it: `engine.bench.compare` (base and variant interleaved, fresh prompts per round,
both computing in the base's auto dtype) and `engine.metrics.speedup_over_rounds` (the median of
the per-round output tokens/s ratios, variant / base, with its 95% interval).

    python bench/cpu_speedup.py [--models smollm2,tinyllama-1b] [--schemes w4a16,w8a16,w8a8,fp8] \
        [--profiles chat,decode-1,decode-8,decode-32] [--rounds 3] [--out FILE]

Models: SmolLM2-135M-Instruct (tests/smollm2.py) and a random bfloat16 checkpoint of
TinyLlama-1.1B's shape (a 1.1B-parameter Llama, written at run time; on the CPU its decode
reads gigabytes of weights per token). Each variant is compressed here by round-to-nearest
(the speed does not depend on how the codes were chosen): W4A16 and W8A16 symmetric in groups
of 128 (64 where K is not a multiple of 128, as on SmolLM2), W8A8 int8 with channel weights and
dynamic per-token activations, FP8 with channel weights and dynamic per-token activations;
lm_head stays dense, as in the presets.

Profiles: `chat` at the stage's CPU scale (1/8: 64 tokens in, 32 out, 32 requests at once) and
`decode-N`: N requests at once, each decoding --decode-tokens tokens (default 32) after a
32-token prompt.
"""

import argparse
import json
import os
import sys
import tempfile
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # run as a file, sys.path starts at bench/: the project root must come first

import torch  # noqa: E402

from engine.profiles import CPU_SCALE, Profile, get_profile  # noqa: E402

_ACTIVATIONS = "{num_bits: 8, type: %s, symmetric: true, strategy: token, dynamic: true}"
SCHEMES = {
    # scheme: (weights, input activations)
    "w4a16": ("num_bits: 4, type: int, symmetric: true, strategy: group, group_size: {group}", "null"),
    "w8a16": ("num_bits: 8, type: int, symmetric: true, strategy: group, group_size: {group}", "null"),
    "w8a8": ("num_bits: 8, type: int, symmetric: true, strategy: channel", _ACTIVATIONS % "int"),
    "fp8": ("num_bits: 8, type: float, symmetric: true, strategy: channel", _ACTIVATIONS % "float"),
}


def recipe(scheme: str, group: int) -> str:
    weights, activations = SCHEMES[scheme]
    return (
        "default_stage:\n  default_modifiers:\n    QuantizationModifier:\n      ignore: [lm_head]\n"
        f"      config_groups: {{group_0: {{targets: [Linear], weights: {{{weights.format(group=group)}}}, "
        f"input_activations: {activations}}}}}\n"
    )


def profile(name: str, decode_tokens: int) -> Profile:
    if name.startswith("decode-"):
        streams = int(name.removeprefix("decode-"))
        return Profile(name, "1", f"{streams} streams decoding", 32, decode_tokens, streams, concurrency=(streams,))
    return get_profile(name).scaled(CPU_SCALE)


def base_model(name: str, folder: Path) -> Path:
    if name == "smollm2":
        from tests.smollm2 import build

        return build()
    from bench.compress_memory import write_checkpoint

    write_checkpoint(folder / "tinyllama-1b", 22)
    return folder / "tinyllama-1b"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="smollm2,tinyllama-1b")
    p.add_argument("--schemes", default=",".join(SCHEMES))
    p.add_argument("--profiles", default="chat,decode-1,decode-8,decode-32")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--decode-tokens", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    from compress import compress
    from engine.bench import compare
    from engine.metrics import describe, speedup_over_rounds
    from kernels.cpu_quant import cpu_plan

    torch.set_num_threads(a.threads)
    figures = {
        "date": date.today().isoformat(),
        "machine": torch.backends.cpu.get_cpu_capability(),
        "command": " ".join(["python", *sys.argv]),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cpu_plan": cpu_plan(),
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
        "rows": [],
    }
    print(f"CPU {figures['machine']}, {figures['threads']} threads, CPU plan {figures['cpu_plan']}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for model in a.models.split(","):
            base = base_model(model, Path(tmp))
            k = json.loads((base / "config.json").read_text())["hidden_size"]
            group = 128 if k % 128 == 0 else 64
            for scheme in a.schemes.split(","):
                variant = Path(tmp) / f"{model}-{scheme}"
                compress(base, recipe(scheme, group), variant, device="cpu")
                for name in a.profiles.split(","):
                    base_m, variant_m = compare(base, variant, profile(name, a.decode_tokens), a.rounds, device="cpu")
                    gains = speedup_over_rounds(base_m.metrics, variant_m.metrics)
                    tokens = gains["output_throughput"]
                    row = {
                        "model": model,
                        "scheme": scheme,
                        "profile": name,
                        "dtype": base_m.settings["dtype"],
                        "output_tok_s_base": round(base_m.metrics["output_throughput"], 2),
                        "output_tok_s_variant": round(variant_m.metrics["output_throughput"], 2),
                        "speedup": tokens,
                        "weights_ratio": gains["memory"].get("weights_bytes"),
                        "load_average": [round(x, 2) for x in os.getloadavg()],
                    }
                    figures["rows"].append(row)
                    print(
                        f"{model} {scheme} {name}: base {row['output_tok_s_base']} tok/s, variant "
                        f"{row['output_tok_s_variant']} tok/s, speedup {describe(tokens)}",
                        flush=True,
                    )
                    if a.out:
                        a.out.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
