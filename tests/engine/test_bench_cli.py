"""`python -m engine bench` on a real checkpoint: the table, JSON with speedups, raw records."""

import json

from tests.engine.test_cli import cli


def test_it_prints_a_comparison_table(stories260k):
    out = cli(
        "bench",
        str(stories260k),
        "--compare",
        str(stories260k),
        "--profile",
        "sweep",
        "--concurrency",
        "2,max",
        "--num-requests",
        "4",
        "--input-len",
        "16",
        "--output-len",
        "4",
    )
    lines = out.splitlines()
    assert lines[0] == "profile sweep v1 (scale 0.125): 16 tokens in, 4 out, cpu, float32"
    assert lines[1].split() == ["metric", "stories260k", "stories260k", "ratio"]
    assert "-- concurrency 2, 4 requests --" in lines and "-- concurrency max, 4 requests --" in lines
    rows = {line.rsplit(None, 3)[0]: line.split()[-3:] for line in lines if line.startswith(("completed", "KV"))}
    assert rows["completed requests"] == ["4", "4", "1.00x"]
    assert rows["KV cache capacity tokens"][-1] == "1.00x"
    for name in ("TTFT", "TPOT", "ITL", "E2EL"):
        assert sum(line.startswith(f"{name} p99 ms") for line in lines) == 2


def test_it_prints_json_and_writes_records(stories260k, tmp_path):
    records = tmp_path / "records.json"
    out = json.loads(
        cli(
            "bench",
            str(stories260k),
            "--json",
            "--num-requests",
            "4",
            "--input-len",
            "16",
            "--output-len",
            "8",
            "--records",
            str(records),
        )
    )
    result = out["stories260k"]
    assert result["runnable"] and result["settings"]["profile"] == "chat" and result["settings"]["num_requests"] == 4
    m = result["metrics"]
    assert m["output_tokens"] == 32 and m["input_tokens"] == 64 and m["completed"] == 4
    assert m["output_throughput"] > 0 and m["ttft_ms"]["p99"] >= m["ttft_ms"]["median"] > 0
    assert m["kv_capacity_tokens"] > 0 and m["weights_bytes"] > 0 and m["peak_memory_bytes"] > 0
    requests = json.loads(records.read_text())["stories260k"]
    assert len(requests) == 4 and all(len(r["token_times"]) == 8 for r in requests)
