"""A fixed cast and a small catalog with every kind of row the stages write, healthchecks-style:
alice owns a private model, bob is another user, staff sees everything."""

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from hub.catalog.models import BaseModel, Publication, Variant
from hub.jobs.models import Job, Recipe, Stage
from hub.results.models import BenchmarkRun, EvalRun, Recovery


@pytest.fixture(autouse=True)
def _storage(isolated_storage):
    return isolated_storage


def write_files(folder: Path, contents: dict[str, bytes]) -> list[dict]:
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for path, data in contents.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(data)
        files.append({"path": path, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    return files


def bench_metrics(ttft: float, tpot: float, tps: float) -> dict:
    return {
        "ttft_ms": {"mean": ttft, "median": ttft, "p99": 2 * ttft},
        "tpot_ms": {"median": tpot},
        "itl_ms": {"median": tpot},
        "e2el_ms": {"median": 100 * tpot, "p99": 120 * tpot},
        "request_throughput": tps / 64,
        "output_throughput": tps,
        "weights_bytes": 1000,
        "kv_capacity_tokens": 4096,
    }


@dataclass
class Catalog:
    llama: BaseModel
    qwen: BaseModel
    private: BaseModel
    w4: Variant
    fp8: Variant
    secret: Variant
    job: Job


@pytest.fixture
def catalog(db, alice, tmp_path) -> Catalog:
    llama = BaseModel.objects.create(
        name="org/llama-1b",
        architecture="LlamaForCausalLM",
        num_parameters=1_200_000_000,
        dtype="bfloat16",
        status=BaseModel.Status.READY,
        size_bytes=2_400_000_000,
        license="apache-2.0",
        local_path=str(tmp_path / "llama"),
        files=write_files(
            tmp_path / "llama",
            {"config.json": b'{"architectures": ["LlamaForCausalLM"]}', "model.safetensors": b"base weights"},
        ),
    )
    qwen = BaseModel.objects.create(
        name="org/qwen-7b",
        architecture="Qwen2ForCausalLM",
        num_parameters=7_600_000_000,
        dtype="bfloat16",
        status=BaseModel.Status.READY,
    )
    private = BaseModel.objects.create(
        name="alice/secret-model",
        architecture="LlamaForCausalLM",
        num_parameters=500_000_000,
        status=BaseModel.Status.READY,
        owner=alice,
        private=True,
    )
    job = Job.objects.create(base_model=llama, owner=alice, suite="quick", benchmark_profile="chat")
    bench_stage = job.add_stage(Stage.Kind.BENCHMARK, Recipe.for_preset("w4a16-gptq"))
    w4 = Variant.objects.create(
        base=llama,
        recipe=Recipe.for_preset("w4a16-gptq"),
        job=job,
        name="org/llama-1b-w4a16-gptq",
        scheme="W4A16",
        gate=Variant.Gate.VALIDATED,
        size_bytes=700_000_000,
        local_path=str(tmp_path / "w4"),
        files=write_files(
            tmp_path / "w4",
            {
                "config.json": b'{"quantization_config": {}}',
                "model.safetensors": b"compressed weights" * 100,
                "recipe.yaml": b"default_stage:\n  default_modifiers:\n    GPTQModifier: {scheme: W4A16}\n",
            },
        ),
        compression_report={"scheme": "W4A16", "seconds": {"total": 12.5}},
    )
    fp8 = Variant.objects.create(
        base=llama,
        recipe=Recipe.for_preset("fp8-dynamic"),
        job=job,
        name="org/llama-1b-fp8-dynamic",
        scheme="FP8_DYNAMIC",
        size_bytes=1_300_000_000,
    )
    secret = Variant.objects.create(
        base=private,
        recipe=Recipe.for_preset("w8a16"),
        name="alice/secret-model-w8a16",
        scheme="W8A16",
        owner=alice,
        private=True,
    )
    base_run = EvalRun.objects.create(
        base_model=llama,
        suite="quick",
        suite_version="1",
        engine_version="0.1",
        settings_key="k",
        metrics={"arc_easy": {"metric": "acc", "value": 0.6, "stderr": 0.02, "n": 300}},
    )
    w4_run = EvalRun.objects.create(
        variant=w4,
        suite="quick",
        suite_version="1",
        engine_version="0.1",
        settings_key="k",
        settings={"fewshot_seed": 1234},
    )
    for task, value, recovery in (("arc_easy", 0.59, 0.983), ("hellaswag", 0.41, 0.976)):
        Recovery.objects.create(
            variant_run=w4_run,
            base_run=base_run,
            task=task,
            metric="acc",
            base_value=value / recovery,
            variant_value=value,
            recovery=recovery,
            recovery_low=recovery - 0.015,
            recovery_high=recovery + 0.015,
            diff=value - value / recovery,
            diff_stderr=0.004,
            ci_low=-0.02,
            ci_high=0.001,
            threshold=0.96,
            verdict=Variant.Gate.VALIDATED,
        )

    def bench_run(**row: object) -> BenchmarkRun:
        return BenchmarkRun.objects.create(
            stage=bench_stage, job=job, profile="chat", profile_version="1", engine_version="0.1", **row
        )

    h100 = {"gpu_name": "NVIDIA H100", "compute_capability": "9.0"}
    bench_run(base_model=llama, hardware=h100, metrics=bench_metrics(40.0, 12.0, 800.0))
    bench_run(variant=w4, hardware=h100, metrics=bench_metrics(30.0, 8.0, 1200.0))
    bench_run(
        variant=fp8,
        hardware={"gpu_name": "NVIDIA A100", "compute_capability": "8.0"},
        runnable=False,
        reason="FP8 needs compute capability 8.9; this GPU is 8.0",
    )
    Publication.objects.create(variant=w4, endpoint="local", repo_id="org/llama-1b-w4a16-gptq", commit_sha="a" * 40)
    return Catalog(llama=llama, qwen=qwen, private=private, w4=w4, fp8=fp8, secret=secret, job=job)
