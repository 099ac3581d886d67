"""Static look at the W4A16 kernels' sm_90 machine code, no GPU needed: Triton compiles each path
at its launch shape for an H100 (ptxas ships with Triton), and this reports registers, spills
and the main loop's instructions per weight element per thread, with the loop's most common
instructions. It cannot time anything (memory latency and occupancy decide that on the device);
it shows what each weight costs in instructions and whether a design spills or converts through
shared memory, which is how the gemv path was chosen on a machine without a GPU.

    python -m bench.kernel_sass [--json OUT]      (with TRITON_INTERPRET unset)
"""

import argparse
import collections
import json
import os
import re
import subprocess
from pathlib import Path
from tempfile import TemporaryDirectory

import torch
import triton

from kernels import gemm_wna16
from tests.kernels.sm90_builds import build_wna16

BIN = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
INSTRUCTION = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;")


def main_loop(sass: str) -> collections.Counter:
    """Opcodes of the longest backward branch's body: the K loop."""
    code = [(int(a, 16), text) for a, text in INSTRUCTION.findall(sass)]
    index = {address: i for i, (address, _) in enumerate(code)}
    best: list[str] = []
    for i, (address, text) in enumerate(code):
        jump = re.search(r"\bBRA\b.*?0x([0-9a-f]+)", text)
        if jump and int(jump.group(1), 16) < address and int(jump.group(1), 16) in index:
            body = [t for _, t in code[index[int(jump.group(1), 16)] : i + 1]]
            best = max(best, body, key=len)
    return collections.Counter(re.sub(r"^@!?U?P\w+\s+", "", t).split()[0].split(".")[0] for t in best)


def analyse(cfg: gemm_wna16.Config, bits: int = 4, zero_points: bool = False) -> dict:
    compiled = build_wna16(cfg, bits, zero_points)
    with TemporaryDirectory() as tmp:
        ptx, cubin = Path(tmp) / "k.ptx", Path(tmp) / "k.cubin"
        ptx.write_text(compiled.asm["ptx"])
        cubin.write_bytes(compiled.asm["cubin"])
        info = subprocess.run(
            [BIN / "ptxas", "-arch=sm_90a", "-v", ptx, "-o", "/dev/null"], capture_output=True, text=True
        ).stderr
        sass = subprocess.run([BIN / "cuobjdump", "-sass", cubin], capture_output=True, text=True, check=True).stdout
    loop = main_loop(sass)
    per_thread = cfg.block_n * cfg.block_k / (32 * cfg.num_warps)  # weight elements a thread handles per K tile
    return {
        "config": str(cfg),
        "registers": int(re.search(r"Used (\d+) registers", info).group(1)),
        "spill_bytes": int(re.search(r"(\d+) bytes spill stores", info).group(1)),
        "loop_instructions": sum(loop.values()),
        "instructions_per_weight": sum(loop.values()) / per_thread,
        "int_to_float": loop["I2F"],
        "barriers": loop["BAR"],
        "top": loop.most_common(8),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    if os.environ.get("TRITON_INTERPRET") == "1":
        raise SystemExit("unset TRITON_INTERPRET: the interpreter's functions cannot be compiled")
    gemm_wna16.num_sms = lambda device_index: 132  # an H100 SXM's, for the split-K counts
    rows = []
    for m in (1, 2, 4, 16):
        cfg = gemm_wna16.default_config(m, 4096, 4096, 128, 4, torch.device("cuda"))
        row = {"rows": m, **analyse(cfg)}
        rows.append(row)
        print(f"{m:2d} rows  {row['config']}\n    {row['registers']} registers, {row['spill_bytes']} B spilled, K loop "
              f"{row['loop_instructions']} instructions = {row['instructions_per_weight']:.2f} per weight per thread "
              f"({row['int_to_float']} I2F, {row['barriers']} BAR); {row['top']}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
