"""A whole suite on stories260k from local data, with no network: results, per-sample logs,
saving, cancelling, and the command line."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from evals import Cancelled, EvalOptions, EvalResult, compare, evaluate, prepare, run
from tests.evals.conftest import TINY, TINY_YAML, no_network

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_result(stories260k, data_dir) -> EvalResult:
    with no_network() as attempts:
        result = evaluate(stories260k, TINY, EvalOptions(data_dir=data_dir))
    assert attempts == []
    return result


def test_it_evaluates_a_suite_from_local_data_without_the_network(tiny_result):
    m = tiny_result.metrics
    assert list(m) == ["arc_easy", "hellaswag", "winogrande", "lambada_openai"]
    assert [m[t]["n"] for t in m] == [6, 4, 6, 6]
    assert m["arc_easy"]["metric"] == "acc_norm,none" and m["winogrande"]["metric"] == "acc,none"
    for task, entry in m.items():
        # the reported number is the mean of the logged per-sample scores the statistics use
        metric = entry["metric"].split(",")[0]
        scores = [s[metric] for s in tiny_result.samples if s["task"] == task]
        assert len(scores) == entry["n"]
        assert entry["value"] == pytest.approx(sum(scores) / len(scores))
        assert entry["stderr"] is not None
    assert tiny_result.results["results"]["arc_easy"]["alias"] == "arc_easy"
    assert tiny_result.results["config"]["model_dir"].endswith("stories260k")
    assert tiny_result.settings["engine_version"] == tiny_result.engine_version


def test_it_saves_results_and_samples_and_reads_them_back(tiny_result, tmp_path):
    digest = tiny_result.save(tmp_path / "run.json")
    header = json.loads((tmp_path / "run.json").read_text())
    assert header["samples_file"] == "run.samples.jsonl.gz" and header["samples_sha256"] == digest
    back = EvalResult.load(tmp_path / "run.json")
    assert back.metrics == tiny_result.metrics and back.settings_key == tiny_result.settings_key
    assert len(back.samples) == len(tiny_result.samples) == 22
    assert all(r.recovery == 1.0 and r.verdict == "validated" for r in compare(tiny_result, back, 0.99))

    samples = tmp_path / "run.samples.jsonl.gz"
    data = samples.read_bytes()
    samples.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(ValueError, match="does not match its recorded sha256"):
        EvalResult.load(tmp_path / "run.json")


def test_it_measures_a_variant_against_its_base(tiny_result, perturbed, data_dir):
    variant = evaluate(perturbed, TINY, EvalOptions(data_dir=data_dir))
    assert variant.settings_key == tiny_result.settings_key
    recoveries = compare(tiny_result, variant, 0.96)
    assert [r.task for r in recoveries] == [t.name for t in TINY.tasks]
    changed = [s for s, t in zip(variant.samples, tiny_result.samples) if s.get("resps") != t.get("resps")]
    assert changed, "the perturbed weights changed no score"
    for r in recoveries:
        assert r.diff == pytest.approx(r.variant_value - r.base_value)
        assert r.ci_low <= r.diff <= r.ci_high


def test_it_stops_when_cancelled(stories260k, data_dir):
    plan = prepare(stories260k, TINY, EvalOptions(data_dir=data_dir))
    calls = []

    def cancelled() -> bool:
        calls.append(1)
        return len(calls) > 3

    with pytest.raises(Cancelled):
        run(plan, cancelled=cancelled)


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1) for a network namespace")
def test_it_runs_and_compares_from_the_command_line_in_a_network_namespace(stories260k, data_dir, tmp_path):
    if subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0:
        pytest.skip("this machine does not allow a network namespace")
    (tmp_path / "tiny.yaml").write_text(TINY_YAML)
    env = {
        **os.environ,
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HUB_EVAL_DATA_DIR": str(data_dir),
        "PYTHONPATH": str(ROOT),
    }
    cmd = ["unshare", "-n", sys.executable, "-m", "evals"]
    out = subprocess.run(
        [*cmd, "run", str(stories260k), "--suite", str(tmp_path / "tiny.yaml"), "--out", str(tmp_path / "a.json")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "arc_easy" in out.stdout and "acc_norm,none" in out.stdout
    out = subprocess.run(
        [*cmd, "compare", str(tmp_path / "a.json"), str(tmp_path / "a.json"), "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "validated: the 95% interval of every task's recovery lies at or above 96%" in out.stdout
