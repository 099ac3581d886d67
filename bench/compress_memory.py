"""Peak resident memory of compress() on a 1.1B-parameter Llama-shaped checkpoint, and of an
older compress() for comparison (`--old-tree`, a checkout of the code from before compression
read one decoder layer at a time: it loads the whole model with from_pretrained).

The checkpoint is written at run time: TinyLlama-1.1B's widths (hidden 2048, intermediate 5632,
22 layers, 32 heads / 4 KV heads, vocabulary 32000, untied LM head), random bfloat16 weights,
in 1 GB shards; stories260k's tokenizer (its ids fit the vocabulary). Each compression runs in
a fresh process that reads its high-water mark of resident memory (`VmHWM`, file pages mapped
in included; `ru_maxrss` would add what this script held when it forked) right after its
imports (the baseline: Python, torch, transformers) and at the end; on a shared machine its CPU
time is a steadier measure than its wall time. The two outputs are compared byte for byte.

    git archive 3685952 compress common | tar -x -C /tmp/old-compress   # the code before
    .venv/bin/python bench/compress_memory.py [--old-tree /tmp/old-compress] [--preset w4a16-gptq]
        [--samples 8 --seq-len 256] [--layers 22] [--threads 2] [--work var/compress-memory]
"""

import argparse
import filecmp
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
# run as a file, sys.path starts at bench/: the project root must come first for its packages to import
sys.path[0] = str(ROOT)

from bench.compress_quality import FIXTURES, LAMBADA  # noqa: E402

STORIES = FIXTURES / "models" / "stories260k"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json")

CHILD = textwrap.dedent("""
    import json, sys, time
    import torch
    import transformers, compressed_tensors, safetensors
    from compress import CalibrationConfig, compress

    def high_water():
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))

    model, preset, data, samples, seq_len, out, threads = sys.argv[1:8]
    torch.set_num_threads(int(threads))
    baseline = high_water()
    start, cpu = time.perf_counter(), time.process_time()
    report = compress(model, preset, out, calibration=CalibrationConfig(data, int(samples), int(seq_len)), device="cpu")
    print(json.dumps({"seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu,
                      "baseline_rss": baseline, "peak_rss": high_water(),
                      "decoder_layers_resident": report.peak_memory.get("decoder_layers_resident")}))
""")


def write_checkpoint(folder: Path, layers: int) -> dict:
    """A random bfloat16 checkpoint of TinyLlama-1.1B's shape, written tensor by tensor."""
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM, LlamaConfig

    from compress.save import ShardWriter

    config = LlamaConfig(
        hidden_size=2048,
        intermediate_size=5632,
        num_hidden_layers=layers,
        num_attention_heads=32,
        num_key_value_heads=4,
        vocab_size=32000,
        max_position_embeddings=2048,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        dtype="bfloat16",
        architectures=["LlamaForCausalLM"],
    )
    with init_empty_weights():
        shapes = {n: t.shape for n, t in AutoModelForCausalLM.from_config(config).state_dict().items()}
    folder.mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    layer_bytes = 0
    with ShardWriter(folder, 1024**3) as shards:
        for name, shape in shapes.items():
            if name.endswith("norm.weight"):
                t = torch.ones(shape, dtype=torch.bfloat16)
            else:
                t = (torch.randn(shape, generator=g) * 0.02).to(torch.bfloat16)
            if name.startswith("model.layers.0."):
                layer_bytes += t.numel() * t.element_size()
            shards.add(name, t)
        shards.finish()
    config.save_pretrained(folder)
    for name in TOKENIZER_FILES:
        shutil.copy(STORIES / name, folder / name)
    return {
        "parameters": sum(s.numel() for s in shapes.values()),
        "layer_bytes": layer_bytes,
        "checkpoint_bytes": sum(p.stat().st_size for p in folder.glob("*.safetensors")),
    }


def run(tree: Path, model: Path, a: argparse.Namespace, out: Path) -> dict:
    args = [a.preset, str(LAMBADA), str(a.samples), str(a.seq_len), str(out), str(a.threads)]
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(model), *args],
        capture_output=True,
        text=True,
        cwd=tree,
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(tree),
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
        },
    )
    if proc.returncode:
        raise RuntimeError(f"compress() from {tree} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    from common.dtypes import compute_dtype

    p = argparse.ArgumentParser()
    p.add_argument("--old-tree", type=Path, help="a checkout whose compress() to measure as well")
    p.add_argument("--preset", default="w4a16-gptq")
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--layers", type=int, default=22)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work", type=Path, default=ROOT / "var" / "compress-memory")
    a = p.parse_args()
    a.work = a.work.resolve()  # the children run in the tree they measure
    shutil.rmtree(a.work, ignore_errors=True)
    started = time.strftime("%Y-%m-%d %H:%M")
    model = a.work / "model"
    sizes = write_checkpoint(model, a.layers)
    print(f"checkpoint: {sizes}", flush=True)
    compute = getattr(torch, compute_dtype("bfloat16", "cpu"))
    # the layer's inputs and its outputs are both held while its outputs are computed
    activations = 2 * a.samples * a.seq_len * 2048 * compute.itemsize
    results = {
        "date": started,
        "machine": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "threads": a.threads,
        "load_average_at_start": os.getloadavg(),
        "preset": a.preset,
        "calibration": f"{a.samples} x {a.seq_len} tokens of LAMBADA",
        "layers": a.layers,
        **sizes,
        "compute_dtype": str(compute).removeprefix("torch."),
        "calibration_activation_bytes": activations,
    }
    new = run(ROOT, model, a, a.work / "new")
    print(f"new: {new}", flush=True)
    results["new"] = new
    results["new_peak_over_baseline_bytes"] = new["peak_rss"] - new["baseline_rss"]
    # the bound asked of it: 3 decoder layers (as stored) and the calibration activations
    results["bound_over_baseline_bytes"] = 3 * sizes["layer_bytes"] + activations
    results["new_within_bound"] = results["new_peak_over_baseline_bytes"] < results["bound_over_baseline_bytes"]
    if a.old_tree is not None:
        old = run(a.old_tree.resolve(), model, a, a.work / "old")
        print(f"old: {old}", flush=True)
        results["old"] = old
        results["old_peak_over_baseline_bytes"] = old["peak_rss"] - old["baseline_rss"]
        names = sorted(p.name for p in (a.work / "old").glob("*.safetensors"))
        results["identical_weights"] = names == sorted(p.name for p in (a.work / "new").glob("*.safetensors")) and all(
            filecmp.cmp(a.work / "old" / n, a.work / "new" / n, shallow=False) for n in names
        )
    print(json.dumps(results, indent=1))
    (a.work / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
