"""What a benchmark ran on, and what it may run: the hardware (CPU, GPU, memory, driver, load),
the scheme a checkpoint carries and whether the device runs it, and the process's peak memory."""

import ctypes
import gc
import json
import os
import platform
import subprocess
from pathlib import Path

import torch

from common.support import min_compute_capability
from engine.config import ModelConfig, resolve_device


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _total_memory() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _nvidia_driver() -> str:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def load_average() -> float | None:
    """The system's 1-minute load average (runnable processes), None where the OS has none."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def describe_hardware(device: str | torch.device = "auto") -> dict:
    dev = resolve_device(device)
    hw = {
        "device": dev.type,
        "cpu": _cpu_name(),
        "cpu_cores": os.cpu_count(),
        "memory_bytes": _total_memory(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        hw.update(
            gpu_name=props.name,
            gpu_memory_bytes=props.total_memory,
            compute_capability=f"{props.major}.{props.minor}",
            driver=_nvidia_driver(),
            cuda=torch.version.cuda,
        )
    return hw


def unrunnable_reason(scheme: str, hardware: dict) -> str | None:
    """Why the hardware cannot run the scheme, or None. On a CPU every scheme runs, through the
    kernels' reference twins."""
    need = min_compute_capability(scheme)
    if hardware.get("device") != "cuda" or need is None:
        return None
    have = float(hardware["compute_capability"])
    if have < need:
        return f"{scheme} needs compute capability {need} or higher; {hardware['gpu_name']} is {have}"
    return None


def scheme_of(model_dir: Path | str) -> str:
    """A checkpoint's compression scheme: the compression report's summary when there is one
    (it alone records 2:4 sparsity), else read from config.json's quantization_config."""
    model_dir = Path(model_dir)
    report = model_dir / "compression_report.json"
    if report.is_file():
        scheme = json.loads(report.read_text()).get("scheme")
        if scheme:
            return scheme
    quant = ModelConfig.from_pretrained(model_dir).quantization
    if not quant:
        return "dense"
    names = set()
    for group in (quant.get("config_groups") or {}).values():
        w, a = group.get("weights") or {}, group.get("input_activations") or {}
        if w.get("type") == "float":
            names.add(f"FP{w.get('num_bits')}")
        else:
            names.add(f"W{w.get('num_bits')}A{a.get('num_bits', 16)}")
    return " + ".join(sorted(names)) or str(quant.get("quant_method", "quantized"))


def _status_bytes(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def reset_peak_memory(device: torch.device) -> int:
    """Starts a peak measurement; returns the memory in use now, which the peak is counted above."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        return 0  # max_memory_allocated counts tensors only: nothing of the process before them
    try:
        # hand memory freed by an earlier model back to the system, or the next one would reuse
        # it without its resident size growing
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        # resets the process's peak resident set size to the current one (Linux 4.0+)
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return 0
    return _status_bytes("VmRSS") or 0


def peak_memory(device: torch.device, before: int) -> tuple[int | None, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device), "torch.cuda.max_memory_allocated"
    peak = _status_bytes("VmHWM")
    if peak is None or not before:
        return None, "not measurable here (needs Linux /proc/self/clear_refs)"
    return peak - before, "process peak resident set size above the size before loading the model"
