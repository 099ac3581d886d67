"""Our GPTQ W4A16 against llm-compressor's, on the CPU: same model, scheme, calibration tokens.

llm-compressor 0.14.0.1 needs compressed-tensors 0.19.0 and transformers <= 5.17, so it runs in
its own virtual environment, which this script creates on first use (torch 2.13.0 from the
machine's disk first, then the rest; deps.md "Set B"). Both sides get:
- SmolLM2-135M-Instruct (bf16), GPTQ int4 symmetric, group 64 (576 is no multiple of 128),
  block 128, dampening 0.01, static activation order, lm_head left alone, group scales by the
  "mse" observer (our w4a16-gptq preset; llm-compressor has the same observer) or `--observer minmax`;
- the same calibration windows (compress.calibration on LAMBADA text: this script saves them for
  llm-compressor, ours builds the identical windows itself), batches of TOKENS_PER_BATCH tokens;
- timing (wall and CPU) from model load to the saved checkpoint, each in its own process, measured
  inside it, with the same torch thread count (--threads, default 1);
Then both checkpoints are scored by bench/compress_quality.py's WikiText-2 perplexity here.

    .venv/bin/python bench/compress_vs_llmcompressor.py [--samples 64 --seq-len 512] [--venv var/llmcompressor-venv] [--threads 1] [--seed 0]
"""

import argparse
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
# run as a file, sys.path starts at bench/: the project root must come first for its packages to import
sys.path[0] = str(ROOT)

from bench.compress_quality import LAMBADA, perplexity, smollm2  # noqa: E402

GROUP_SIZE = 64
SET_B = ["llmcompressor==0.14.0.1", "compressed-tensors==0.19.0", "transformers==5.17.0", "datasets==5.2.0"]

OURS = textwrap.dedent("""
    import json, sys, time
    t0 = time.perf_counter()
    from compress import CalibrationConfig, compress
    model, lambada, samples, seq_len, out, group, observer, seed = sys.argv[1:9]
    recipe = f'''
    default_stage:
      default_modifiers:
        GPTQModifier:
          ignore: [lm_head]
          config_groups:
            group_0:
              targets: [Linear]
              weights: {{num_bits: 4, type: int, symmetric: true, strategy: group, group_size: {group}, observer: {observer}}}
          block_size: 128
          dampening_frac: 0.01
          actorder: static
    '''
    start, cpu = time.perf_counter(), time.process_time()
    # the windows the parent saved for llm-compressor: same function, seed and tokenizer
    compress(model, recipe, out, calibration=CalibrationConfig(lambada, int(samples), int(seq_len), seed=int(seed)), device="cpu")
    print(json.dumps({"seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu, "imports": start - t0}))
""")

THEIRS = textwrap.dedent("""
    import json, sys, time
    t0 = time.perf_counter()
    import torch
    from datasets import Dataset
    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import GPTQModifier
    from transformers import AutoModelForCausalLM, AutoTokenizer
    model_dir, calib, out, group, batch, observer = sys.argv[1:7]
    ids = torch.load(calib)
    ds = Dataset.from_dict({"input_ids": ids.tolist(), "attention_mask": torch.ones_like(ids).tolist()})
    start, cpu = time.perf_counter(), time.process_time()
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype="auto")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    recipe = GPTQModifier(
        ignore=["lm_head"],
        config_groups={"group_0": {"targets": ["Linear"], "weights": {
            "num_bits": 4, "type": "int", "symmetric": True, "strategy": "group", "group_size": int(group),
            "observer": observer}}},
        block_size=128, dampening_frac=0.01, actorder="static")
    oneshot(model=model, dataset=ds, recipe=recipe, max_seq_length=ids.shape[1],
            num_calibration_samples=len(ids), batch_size=int(batch), shuffle_calibration_samples=False)
    model.save_pretrained(out, save_compressed=True)
    tokenizer.save_pretrained(out)
    print(json.dumps({"seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu, "imports": start - t0}))
""")


def ensure_venv(venv: Path) -> Path:
    python = venv / "bin" / "python"
    if (
        python.exists()
        and subprocess.run([str(python), "-c", "import llmcompressor"], capture_output=True).returncode == 0
    ):
        return python
    subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "torch==2.13.0"], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *SET_B], check=True)
    return python


def run(python: Path, code: str, *args: str, cwd: Path, threads: int) -> dict:
    script = cwd / "child.py"
    script.write_text(code)
    # both children get the same environment, thread count included
    proc = subprocess.run(
        [str(python), str(script), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(ROOT),
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "OMP_NUM_THREADS": str(threads),
        },
    )
    if proc.returncode:
        raise RuntimeError(f"{python} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    from transformers import AutoTokenizer

    from compress.calibration import CalibrationConfig, load_calibration
    from compress.pipeline import TOKENS_PER_BATCH

    p = argparse.ArgumentParser()
    p.add_argument("--samples", type=int, default=64)
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--venv", type=Path, default=ROOT / "var" / "llmcompressor-venv")
    p.add_argument("--work", type=Path, default=ROOT / "var" / "compress-vs-llmcompressor")
    p.add_argument("--ppl-tokens", type=int, default=32768)
    p.add_argument("--observer", default="mse", help="weight observer for both: mse (our presets) or minmax")
    p.add_argument("--threads", type=int, default=1, help="torch threads in both children (OMP_NUM_THREADS)")
    p.add_argument(
        "--seed", type=int, default=0, help="which calibration windows (compress.calibration's shuffle seed)"
    )
    a = p.parse_args()
    theirs_python = ensure_venv(a.venv)
    model = smollm2()
    shutil.rmtree(a.work, ignore_errors=True)
    a.work.mkdir(parents=True)
    calib = CalibrationConfig(str(LAMBADA), a.samples, a.seq_len, seed=a.seed).resolved("cpu")
    ids = load_calibration(AutoTokenizer.from_pretrained(model), calib)
    torch.save(ids, a.work / "calib.pt")
    batch = str(max(1, TOKENS_PER_BATCH // a.seq_len))

    theirs = run(
        theirs_python,
        THEIRS,
        str(model),
        str(a.work / "calib.pt"),
        str(a.work / "theirs"),
        str(GROUP_SIZE),
        batch,
        a.observer,
        cwd=a.work,
        threads=a.threads,
    )
    print(f"llm-compressor: {theirs['seconds']:.1f} s", flush=True)
    ours = run(
        Path(sys.executable),
        OURS,
        str(model),
        str(LAMBADA),
        str(a.samples),
        str(a.seq_len),
        str(a.work / "ours"),
        str(GROUP_SIZE),
        a.observer,
        str(a.seed),
        cwd=a.work,
        threads=a.threads,
    )
    print(f"ours: {ours['seconds']:.1f} s", flush=True)
    results = {
        "observer": a.observer,
        "threads": a.threads,
        "calibration": f"{a.samples} x {a.seq_len} tokens of LAMBADA (seed {a.seed}), batches of {min(int(batch), a.samples)}",
        "ours_seconds": ours["seconds"],
        "llmcompressor_seconds": theirs["seconds"],
        "time_ratio_llmcompressor_over_ours": theirs["seconds"] / ours["seconds"],
        "ours_cpu_seconds": ours["cpu_seconds"],
        "llmcompressor_cpu_seconds": theirs["cpu_seconds"],
        # the machine is shared: CPU time is the steadier measure
        "cpu_time_ratio_llmcompressor_over_ours": theirs["cpu_seconds"] / ours["cpu_seconds"],
        "ppl_base": perplexity(model, a.ppl_tokens),
        "ppl_ours": perplexity(a.work / "ours", a.ppl_tokens),
        "ppl_llmcompressor": perplexity(a.work / "theirs", a.ppl_tokens),
    }
    print(json.dumps(results, indent=1))
    (a.work / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
