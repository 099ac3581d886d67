"""The benchmark on the real engine (stories260k): request timing under each concurrency mode,
duration limits, prompt files, whole measurements with memory and refusals, and base and
variant interleaved in rounds."""

import json
import shutil
from dataclasses import replace

import pytest
from transformers import AutoTokenizer

import engine.bench
from engine import LLM, Cancelled
from engine.bench import Workload, compare, measure, random_prompts, read_prompt_file, run_workload
from engine.hardware import scheme_of
from engine.profiles import Profile

TINY = Profile("tiny", "1", "test", input_len=16, output_len=6, num_requests=6)


@pytest.fixture(scope="module")
def llm(stories260k):
    return LLM(stories260k, device="cpu")


def test_it_sends_every_request_at_once(llm):
    run = run_workload(llm, Workload(num_requests=6, input_len=16, output_len=6))
    m = run.metrics
    assert (m["completed"], m["incomplete"], m["input_tokens"], m["output_tokens"]) == (6, 0, 96, 36)
    assert m["concurrency"] == "max" and m["max_running_requests"] == 6 and m["preemptions"] == 0
    assert all(r.start == 0 and len(r.token_times) == 6 and r.finished for r in run.records)
    assert 0 < m["ttft_ms"]["median"] <= m["e2el_ms"]["median"] and m["tpot_ms"]["mean"] > 0
    assert m["output_throughput"] == pytest.approx(36 / m["duration_s"])


def test_it_keeps_n_requests_in_flight(llm):
    run = run_workload(llm, Workload(num_requests=6, input_len=16, output_len=4, concurrency=2))
    assert run.metrics["max_running_requests"] == 2 and run.metrics["concurrency"] == 2
    assert llm.scheduler.max_num_seqs == 256  # given back
    ends = sorted(r.token_times[-1] for r in run.records)
    # the first two start at once; each later one when a slot frees, and not before
    assert [r.start for r in run.records[:2]] == [0, 0]
    assert [r.start for r in run.records[2:]] == ends[:4]
    assert all(r.start < r.token_times[0] for r in run.records)

    serial = run_workload(llm, Workload(num_requests=3, input_len=16, output_len=4, concurrency=1, seed=1))
    assert serial.metrics["max_running_requests"] == 1
    for before, after in zip(serial.records, serial.records[1:]):
        assert after.start == before.token_times[-1] < after.token_times[0]


def test_it_stops_at_the_duration_and_counts_what_did_not_finish(llm):
    run = run_workload(llm, Workload(num_requests=4, input_len=16, output_len=400, max_duration_s=0.05))
    m = run.metrics
    assert m["completed"] == 0 and m["incomplete"] == 4 and m["duration_s"] >= 0.05
    assert any(r.token_times for r in run.records)  # cut short, not refused
    assert not llm.scheduler.has_unfinished()


def test_it_stops_when_cancelled(llm):
    with pytest.raises(Cancelled):
        run_workload(llm, Workload(num_requests=2, input_len=8, output_len=50), cancelled=lambda: True)
    assert not llm.scheduler.has_unfinished()


def test_it_draws_random_prompts_from_the_tokenizer_with_a_seed(llm):
    w = Workload(num_requests=3, input_len=32)
    prompts = random_prompts(llm, w)
    assert prompts == random_prompts(llm, w) != random_prompts(llm, replace(w, seed=1))
    special = set(llm.tokenizer.all_special_ids)
    assert all(len(p) == 32 and not special & set(p) for p in prompts)


def test_it_refuses_a_workload_longer_than_the_model(llm):
    with pytest.raises(ValueError, match="exceeds the model's max_model_len 512"):
        run_workload(llm, Workload(num_requests=1, input_len=500, output_len=50))


def test_it_reads_prompt_files(llm, tmp_path):
    jsonl = tmp_path / "prompts.jsonl"
    jsonl.write_text(json.dumps({"prompt": "Once upon a time"}) + "\n\n" + json.dumps({"text": "The dog"}) + "\n")
    txt = tmp_path / "prompts.txt"
    txt.write_text("Once upon a time\nThe dog\n")
    expected = [llm.tokenizer("Once upon a time").input_ids, llm.tokenizer("The dog").input_ids]
    assert read_prompt_file(jsonl, llm) == read_prompt_file(txt, llm) == expected
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "?"}) + "\n")
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        read_prompt_file(bad, llm)


def test_it_measures_a_model_on_every_level_with_memory(stories260k, tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("Once upon a time\nThe dog ran\nLily saw a ball\n")
    profile = replace(TINY, concurrency=(1, None), requests_per_stream=2)
    m = measure(stories260k, profile, prompts_file=prompts, device="cpu", num_kv_blocks=64)
    assert m.runnable and m.scheme == "dense" and m.reason == ""
    assert m.settings["concurrency"] == [1, "max"] and m.settings["prompts"] == "file p.txt"
    assert m.settings["dtype"] == m.settings["kv_cache_dtype"] == "float32" and m.settings["max_model_len"] == 512
    metrics = m.metrics
    assert [lv["concurrency"] for lv in metrics["levels"]] == [1, "max"]
    assert [lv["completed"] for lv in metrics["levels"]] == [2, 6]
    assert metrics["concurrency"] == "max" and metrics["completed"] == 6  # the headline is the last level
    assert metrics["weights_bytes"] > 0 and metrics["kv_capacity_tokens"] == 64 * 16
    assert [type(x) for x in metrics["load_average"]] == [float, float]
    assert metrics["peak_memory_bytes"] > 0 and "peak" in metrics["peak_memory_kind"]
    for key in ("ttft_ms", "tpot_ms", "itl_ms", "e2el_ms"):
        assert set(metrics[key]) == {"mean", "std", "median", "p90", "p99"}
    records = m.records()
    assert len(records) == 8 and {r["concurrency"] for r in records} == {1, "max"}
    # the file's prompts, round the end: level 1 took the first two, "max" the next six
    first = [r["input_tokens"] for r in records]
    tokenizer = AutoTokenizer.from_pretrained(stories260k)
    lengths = [len(tokenizer(line).input_ids) for line in prompts.read_text().splitlines()]
    assert first == [lengths[i % 3] for i in range(8)]


def test_it_reports_a_checkpoint_the_engine_refuses_as_not_runnable(stories260k, tmp_path):
    refused = tmp_path / "refused"
    shutil.copytree(stories260k, refused)
    config = json.loads((refused / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_4bit": True}
    (refused / "config.json").write_text(json.dumps(config))
    m = measure(refused, TINY, device="cpu")
    assert not m.runnable and "not supported" in m.reason and m.metrics == {} and m.runs == []
    assert m.scheme == "bitsandbytes"


def test_it_names_a_checkpoint_scheme(stories260k, tmp_path):
    assert scheme_of(stories260k) == "dense"
    fp8 = tmp_path / "fp8"
    shutil.copytree(stories260k, fp8)
    config = json.loads((fp8 / "config.json").read_text())
    config["quantization_config"] = {
        "quant_method": "compressed-tensors",
        "config_groups": {
            "group_0": {
                "weights": {"num_bits": 8, "type": "float"},
                "input_activations": {"num_bits": 8, "type": "float"},
            }
        },
    }
    (fp8 / "config.json").write_text(json.dumps(config))
    assert scheme_of(fp8) == "FP8"
    (fp8 / "compression_report.json").write_text(json.dumps({"scheme": "2:4 + FP8_DYNAMIC"}))
    assert scheme_of(fp8) == "2:4 + FP8_DYNAMIC"


@pytest.mark.parametrize("fit", [True, False])
def test_it_interleaves_base_and_variant_in_rounds_loaded_once_or_per_round(stories260k, tmp_path, monkeypatch, fit):
    variant_dir = tmp_path / "variant"
    shutil.copytree(stories260k, variant_dir)
    loads = []

    class CountingLLM(LLM):
        def __init__(self, model, **options) -> None:
            loads.append(model.name)
            super().__init__(model, **options)

    monkeypatch.setattr(engine.bench, "LLM", CountingLLM)
    monkeypatch.setattr(engine.bench, "_fit_together", lambda *dirs: fit)  # a GPU, or a CPU too small
    profile = replace(TINY, concurrency=(1, None), requests_per_stream=2)
    base, variant = compare(stories260k, variant_dir, profile, 3, device="cpu", dtype="auto", num_kv_blocks=64)

    assert loads == (["stories260k", "variant"] if fit else ["stories260k", "variant"] * 3)
    assert base.runnable and variant.runnable and base.settings == variant.settings
    assert base.settings["rounds"] == 3 and variant.settings["dtype"] == "float32"
    for m in (base, variant):
        rounds = m.metrics["rounds"]
        assert [r["seed"] for r in rounds] == [0, 2, 4]  # two levels a round, each its own seed
        assert [[lv["concurrency"] for lv in r["levels"]] for r in rounds] == [[1, "max"]] * 3
        assert len(m.metrics["load_average"]) == 6 and m.metrics["peak_memory_bytes"] > 0
        assert m.metrics["output_throughput"] == rounds[m.metrics["headline_round"]]["output_throughput"]
        assert len(m.runs) == 6 and len(m.headline_runs) == 2 and len(m.records()) == 3 * 8
    assert [r.workload.seed for r in base.runs] == [r.workload.seed for r in variant.runs] == [0, 1, 2, 3, 4, 5]
