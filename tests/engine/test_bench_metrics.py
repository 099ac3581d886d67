"""Benchmark metrics against values worked out by hand on synthetic timestamp streams, with
vLLM's definitions (TTFT, TPOT = (E2EL - TTFT) / (n - 1), pooled ITL, E2EL, linear percentiles,
one-second buckets for the peaks)."""

import math

import pytest

from common.support import min_compute_capability
from engine.hardware import unrunnable_reason
from engine.metrics import (
    MAX_SPREAD,
    RequestRecord,
    compute_metrics,
    ratio_interval,
    speedup,
    speedup_over_rounds,
    summarize,
)
from hub.jobs.presets import PRESETS


def close(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        assert actual[key] == pytest.approx(value, abs=1e-9), key


def test_it_summarizes_in_milliseconds_with_linear_percentiles():
    close(summarize([0.1, 0.3]), {"mean": 200, "std": 100, "median": 200, "p90": 280, "p99": 298})
    close(
        summarize([0.2, 0.3, 0.3]),
        {"mean": 800 / 3, "std": math.sqrt(20000 / 9), "median": 300, "p90": 300, "p99": 300},
    )
    close(summarize([0.05]), {"mean": 50, "std": 0, "median": 50, "p90": 50, "p99": 50})
    assert summarize([]) == {}


def test_it_measures_two_requests_sent_at_once():
    # A: tokens at 0.1, 0.3, 0.6; B: first token at 0.3 (the step that also gave A its second)
    a = RequestRecord(0, input_tokens=10, start=0.0, token_times=[0.1, 0.3, 0.6], finished=True)
    b = RequestRecord(1, input_tokens=20, start=0.0, token_times=[0.3, 0.6], finished=True)
    m = compute_metrics([a, b], duration_s=1.0)

    assert (m["completed"], m["incomplete"], m["input_tokens"], m["output_tokens"]) == (2, 0, 30, 5)
    assert (m["request_throughput"], m["output_throughput"], m["total_token_throughput"]) == (2.0, 5.0, 35.0)
    close(m["ttft_ms"], {"mean": 200, "std": 100, "median": 200, "p90": 280, "p99": 298})
    # TPOT: A (600 - 100) / 2 = 250, B (600 - 300) / 1 = 300
    close(m["tpot_ms"], {"mean": 275, "std": 25, "median": 275, "p90": 295, "p99": 299.5})
    # ITL pooled: A 200, 300; B 300
    close(m["itl_ms"], {"mean": 800 / 3, "std": math.sqrt(20000 / 9), "median": 300, "p90": 300, "p99": 300})
    close(m["e2el_ms"], {"mean": 600, "std": 0, "median": 600, "p90": 600, "p99": 600})
    assert m["max_running_requests"] == 2  # both got a token in the steps ending at 0.3 and 0.6
    assert m["max_output_tokens_per_s"] == 5 and m["max_concurrent_requests"] == 2  # all in second 0


def test_it_times_a_request_from_when_its_slot_freed():
    # one slot: B is sent when A finishes at 0.4
    a = RequestRecord(0, 4, start=0.0, token_times=[0.1, 0.4], finished=True)
    b = RequestRecord(1, 4, start=0.4, token_times=[0.5, 0.7, 0.9], finished=True)
    m = compute_metrics([a, b], duration_s=0.9)
    close(m["ttft_ms"], {"mean": 100, "std": 0, "median": 100, "p90": 100, "p99": 100})
    close(m["e2el_ms"], {"mean": 450, "std": 50, "median": 450, "p90": 490, "p99": 499})
    close(m["tpot_ms"], {"mean": 250, "std": 50, "median": 250, "p90": 290, "p99": 299})
    assert m["max_running_requests"] == 1
    assert m["request_throughput"] == pytest.approx(2 / 0.9)


def test_it_counts_peaks_in_one_second_buckets_as_vllm():
    a = RequestRecord(0, 1, start=0.0, token_times=[0.5, 1.5, 2.5], finished=True)  # seconds 0, 1, 2
    b = RequestRecord(1, 1, start=1.2, token_times=[1.4, 1.6], finished=True)  # second 1
    m = compute_metrics([a, b], duration_s=3.0)
    assert m["max_output_tokens_per_s"] == 3  # 1.4, 1.5 and 1.6
    assert m["max_concurrent_requests"] == 2


def test_it_leaves_unfinished_and_single_token_requests_out_where_vllm_does():
    one = RequestRecord(0, 8, start=0.0, token_times=[0.2], finished=True)
    cut = RequestRecord(1, 8, start=0.0, token_times=[0.2, 0.4], finished=False)  # the duration ran out
    never = RequestRecord(2, 8, start=0.0)
    m = compute_metrics([one, cut, never], duration_s=0.5)
    assert (m["completed"], m["incomplete"], m["input_tokens"], m["output_tokens"]) == (1, 2, 8, 1)
    close(m["ttft_ms"], {"mean": 200, "std": 0, "median": 200, "p90": 200, "p99": 200})
    close(m["e2el_ms"], {"mean": 200, "std": 0, "median": 200, "p90": 200, "p99": 200})
    assert m["tpot_ms"] == {} and m["itl_ms"] == {}  # no request with a second token finished
    assert m["request_throughput"] == 2.0 and m["output_throughput"] == 2.0


def test_it_computes_speedups_as_ratios_above_one_when_the_variant_is_better():
    base = {
        "request_throughput": 2.0,
        "output_throughput": 100.0,
        "total_token_throughput": 300.0,
        "ttft_ms": {"median": 50.0},
        "tpot_ms": {"median": 20.0},
        "itl_ms": {"median": 20.0},
        "e2el_ms": {"median": 1000.0},
        "weights_bytes": 1000,
        "kv_capacity_tokens": 4096,
        "peak_memory_bytes": 2000,
    }
    variant = {
        "request_throughput": 3.0,
        "output_throughput": 150.0,
        "total_token_throughput": 450.0,
        "ttft_ms": {"median": 40.0},
        "tpot_ms": {"median": 25.0},
        "itl_ms": {"median": 10.0},
        "e2el_ms": {"median": 800.0},
        "weights_bytes": 250,
        "kv_capacity_tokens": 8192,
        "peak_memory_bytes": 1000,
    }
    s = speedup(base, variant)
    assert s["output_throughput"] == 1.5 and s["request_throughput"] == 1.5 and s["total_token_throughput"] == 1.5
    assert s["ttft_median"] == 1.25 and s["tpot_median"] == 0.8 and s["itl_median"] == 2.0 and s["e2el_median"] == 1.25
    assert s["memory"] == {"weights_bytes": 0.25, "kv_capacity_tokens": 2.0, "peak_memory_bytes": 0.5}

    levels_b = [{**base, "concurrency": 1}, {**base, "concurrency": "max"}]
    levels_v = [{**variant, "concurrency": 1}, {**base, "concurrency": "max"}]
    s = speedup({**base, "levels": levels_b}, {**variant, "levels": levels_v})
    assert [(lv["concurrency"], lv["output_throughput"]) for lv in s["levels"]] == [(1, 1.5), ("max", 1.0)]


def test_it_knows_which_gpus_run_which_schemes_as_the_presets_say():
    needs = {name: preset.min_compute_capability for name, preset in PRESETS.items()}
    fp8 = ("fp8-dynamic", "fp8-gptq", "fp8-kv", "fp8-static", "fp8-block", "2of4-fp8")
    assert {needs[name] for name in fp8} == {8.9}
    assert needs["2of4"] == needs["2of4-magnitude"] == needs["2of4-w4a16"] == 8.0
    # FP4 weights run decoded at load: any GPU
    assert {name for name, need in needs.items() if need is None} == {
        "w4a16",
        "w4a16-gptq",
        "w4a16-awq",
        "w4a16-asym",
        "w8a16",
        "w8a8-int8",
        "nvfp4a16",
        "mxfp4a16",
    }
    assert min_compute_capability("2:4 + W4A16") == 8.0 and min_compute_capability("fp8_dynamic") == 8.9
    a100 = {"device": "cuda", "gpu_name": "NVIDIA A100", "compute_capability": "8.0"}
    h100 = {"device": "cuda", "gpu_name": "NVIDIA H100", "compute_capability": "9.0"}
    t4 = {"device": "cuda", "gpu_name": "Tesla T4", "compute_capability": "7.5"}
    assert (
        unrunnable_reason("FP8_DYNAMIC", a100)
        == "FP8_DYNAMIC needs compute capability 8.9 or higher; NVIDIA A100 is 8.0"
    )
    assert unrunnable_reason("FP8_DYNAMIC", h100) is None
    assert "8.0" in unrunnable_reason("2:4 + W4A16", t4) and unrunnable_reason("2:4 + W4A16", a100) is None
    assert unrunnable_reason("W4A16", t4) is None and unrunnable_reason("W8A8", t4) is None
    assert unrunnable_reason("FP8_DYNAMIC", {"device": "cpu"}) is None  # reference kernels run everything


def test_it_calls_a_consistent_2x_over_five_rounds_a_speedup_with_an_interval_above_1():
    i = ratio_interval([1.96, 2.03, 2.0, 1.98, 2.05])
    assert i["median"] == 2.0 and 1.9 < i["low"] < 2.0 < i["high"] < 2.1
    assert i["verdict"] == "faster" and i["spread"] == pytest.approx(2.05 / 1.96)
    assert i["summary"] == f"2.00x (95% interval {i['low']:.2f}-{i['high']:.2f})"
    slower = ratio_interval([0.5, 0.52, 0.49])
    assert slower["verdict"] == "slower" and slower["high"] < 1 and slower["summary"].startswith("0.50x (95% interval")


def test_it_puts_a_student_t_interval_on_the_log_ratios():
    # logs 0.1, 0.2, 0.3: mean 0.2, sample sd 0.1, t(0.975, 2 df) = 4.303
    i = ratio_interval([math.exp(0.1), math.exp(0.2), math.exp(0.3)])
    half = 4.303 * 0.1 / math.sqrt(3)
    assert i["low"] == pytest.approx(math.exp(0.2 - half)) and i["high"] == pytest.approx(math.exp(0.2 + half))
    assert i["median"] == pytest.approx(math.exp(0.2))
    assert i["verdict"] == "inconclusive" and i["summary"] == (
        f"inconclusive on this machine: interval {i['low']:.2f}-{i['high']:.2f} includes 1"
    )
    agree = ratio_interval([3.0, 3.0, 3.0])  # rounds that agree exactly: no width
    assert agree["low"] == pytest.approx(3.0) == agree["high"] and agree["verdict"] == "faster"


def test_it_calls_rounds_that_disagree_inconclusive_even_when_the_interval_excludes_1():
    ratios = [2.0, 2.1, 2.2, 3.2, 3.3, 3.4, 2.05, 3.1, 2.15, 3.25]
    i = ratio_interval(ratios)
    assert i["low"] > 1 and i["spread"] > MAX_SPREAD
    assert i["verdict"] == "inconclusive"
    assert i["summary"] == "inconclusive on this machine: rounds range 2.00-3.40, more than 1.5x apart"


def test_it_labels_a_single_round_as_such():
    i = ratio_interval([3.0])
    assert (i["verdict"], i["low"], i["high"], i["summary"]) == ("one round", 3.0, 3.0, "3.00x (one round)")
    with pytest.raises(ValueError):
        ratio_interval([])


def round_metrics(tps: float, tpot: float, **extra) -> dict:
    return {
        "output_throughput": tps,
        "request_throughput": tps / 8,
        "ttft_ms": {"median": 80 / tps * 100},
        "tpot_ms": {"median": tpot},
        **extra,
    }


def test_it_reports_a_speedup_with_one_slow_base_round_as_inconclusive():
    # the variant is twice as fast in every round, but the base's first round ran three times
    # slower (the machine was busy): measured once, that round alone read "6.00x"
    base = [round_metrics(100.0 / 3, 30.0), round_metrics(100.0, 10.0), round_metrics(101.0, 10.1)]
    variant = [round_metrics(200.0, 5.0), round_metrics(199.0, 5.0), round_metrics(203.0, 5.05)]
    memory = {"weights_bytes": 1000, "kv_capacity_tokens": 64, "peak_memory_bytes": 10}
    gains = speedup_over_rounds(
        {**base[1], **memory, "rounds": base}, {**variant[1], **memory, "weights_bytes": 500, "rounds": variant}
    )
    assert speedup(base[0], variant[0])["output_throughput"] == pytest.approx(6.0)
    tp = gains["output_throughput"]
    assert tp["ratios"] == pytest.approx([6.0, 1.99, 203 / 101]) and tp["median"] == pytest.approx(203 / 101)
    assert tp["verdict"] == "inconclusive" and tp["summary"].startswith("inconclusive on this machine")
    assert gains["tpot_median"]["verdict"] == "inconclusive"
    assert gains["memory"]["weights_bytes"] == 0.5 and gains["rounds"] == 3 and "Student-t" in gains["method"]

    steady = speedup_over_rounds({"rounds": base[1:] * 2}, {"rounds": variant[1:] * 2})
    assert steady["output_throughput"]["verdict"] == "faster" and steady["output_throughput"]["low"] > 1


def test_it_gives_each_level_its_interval():
    def with_levels(tps: float) -> dict:
        levels = [round_metrics(tps, 10.0, concurrency=1), round_metrics(2 * tps, 10.0, concurrency="max")]
        return {**levels[-1], "levels": levels}

    gains = speedup_over_rounds(
        {"rounds": [with_levels(100), with_levels(100), with_levels(100)]},
        {"rounds": [with_levels(150), with_levels(151), with_levels(149)]},
    )
    assert [lv["concurrency"] for lv in gains["levels"]] == [1, "max"]
    assert all(lv["output_throughput"]["verdict"] == "faster" for lv in gains["levels"])
    assert gains["levels"][0]["output_throughput"]["median"] == pytest.approx(1.5)


def test_it_gives_no_interval_to_a_figure_a_round_could_not_measure():
    base = [round_metrics(100.0, 10.0)] * 4
    variant = [round_metrics(150.0, 8.0), {**round_metrics(150.0, 8.0), "output_throughput": 0.0}] * 2
    gains = speedup_over_rounds({"rounds": base}, {"rounds": variant})
    assert "output_throughput" not in gains and gains["tpot_median"]["median"] == 1.25
