"""compress(): the output folder appears whole or not at all; progress, cancel, report, CLI."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from compress import CalibrationConfig, Cancelled, compress

ROOT = Path(__file__).resolve().parents[2]


def test_it_writes_weights_tokenizer_recipe_and_a_report(stories260k, lambada, tmp_path):
    calls = []
    report = compress(
        stories260k,
        "w8a8-int8",
        tmp_path / "out",
        calibration=CalibrationConfig(str(lambada), 4, 64),
        progress=lambda done, message: calls.append((done, message)),
    )
    out = tmp_path / "out"
    names = {p.name for p in out.iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "recipe.yaml",
        "compression_report.json",
        "tokenizer.json",
        "tokenizer.model",
        "tokenizer_config.json",
        "generation_config.json",
    } <= names
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary folder left behind
    on_disk = json.loads((out / "compression_report.json").read_text())
    assert on_disk == json.loads(report.to_json())
    assert on_disk["recipe"] == "w8a8-int8" and on_disk["scheme"] == "W8A8"
    assert on_disk["algorithms"] == ["SmoothQuant", "GPTQ"]
    assert on_disk["calibration"]["num_samples"] == 4 and on_disk["calibration"]["tokens"] == 4 * 64
    assert len(on_disk["layers"]) == 5 and all(0 < layer["output_rel_error"] < 0.5 for layer in on_disk["layers"])
    assert all("gptq_loss" in m for m in on_disk["layers"][0]["modules"].values())
    assert on_disk["peak_memory"]["process_max_rss_bytes"] > 0 and on_disk["seconds"]["total"] > 0
    assert {"torch", "transformers", "compressed_tensors"} <= set(on_disk["versions"])
    listed = {f["path"]: f for f in on_disk["files"]}
    assert set(listed) == names - {"compression_report.json"}
    assert listed["model.safetensors"]["bytes"] == (out / "model.safetensors").stat().st_size
    assert "GPTQModifier" in (out / "recipe.yaml").read_text()
    fractions = [done for done, _ in calls]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert [m for _, m in calls if m.startswith("layer")] == [f"layer {i}/5" for i in range(1, 6)]


def test_cancelling_between_layers_leaves_nothing(stories260k, tmp_path):
    seen = []
    with pytest.raises(Cancelled, match="layer 2"):
        compress(
            stories260k,
            "fp8-dynamic",
            tmp_path / "out",
            progress=lambda d, m: seen.append(m),
            cancelled=lambda: "layer 2/5" in seen,
        )
    assert list(tmp_path.iterdir()) == []


def test_a_failure_while_saving_leaves_nothing(stories260k, tmp_path, monkeypatch):
    import compress.api as api

    def broken(*args):
        raise OSError("disk full")

    monkeypatch.setattr(api, "copy_tokenizer_files", broken)
    with pytest.raises(OSError, match="disk full"):
        compress(stories260k, "fp8-dynamic", tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_it_refuses_an_existing_output(stories260k, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        compress(stories260k, "fp8-dynamic", tmp_path / "out")
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


def test_data_free_recipes_need_no_calibration_data(stories260k, tmp_path):
    report = compress(stories260k, "2of4-magnitude", tmp_path / "out")
    assert report.calibration is None and report.layers[0]["output_rel_error"] is None


def test_the_command_line_shows_progress(stories260k, lambada, tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "compress",
            str(stories260k),
            "--recipe",
            "w4a16-gptq",
            "--out",
            str(tmp_path / "out"),
            "--dataset",
            str(lambada),
            "--num-samples",
            "4",
            "--seq-len",
            "64",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    # 172-wide MLP inputs take no group of 32 or more: the error says what would work
    assert proc.returncode != 0 and "strategy: channel" in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "compress", str(stories260k), "--recipe", "fp8-dynamic", "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert "layer 5/5" in proc.stderr and "FP8_DYNAMIC" in proc.stderr
    assert (tmp_path / "out" / "model.safetensors").exists()
