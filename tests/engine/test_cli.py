"""`python -m engine generate|score|bench` on a real checkpoint."""

import json
import os
import subprocess
import sys
from pathlib import Path

from engine import LLM, SamplingParams

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "engine", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},  # see conftest.one_torch_thread
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_it_generates_from_the_command_line(stories260k):
    out = cli("generate", str(stories260k), "--prompt", "Once upon a time", "--prompt", "The dog", "--max-tokens", "12")
    records = [json.loads(line) for line in out.splitlines()]
    expected = LLM(stories260k, device="cpu").generate(
        ["Once upon a time", "The dog"], SamplingParams(max_tokens=12, temperature=0)
    )
    assert [r["token_ids"] for r in records] == [o.token_ids for o in expected]
    assert [r["text"] for r in records] == [o.text for o in expected]


def test_it_scores_from_the_command_line(stories260k, tmp_path):
    requests = tmp_path / "requests.jsonl"
    requests.write_text(
        json.dumps({"context": "Once upon a time", "continuation": ", there was"})
        + "\n"
        + json.dumps({"context": "Once upon a time", "continuation": " purple algebra"})
        + "\n"
    )
    records = [json.loads(line) for line in cli("score", str(stories260k), "--file", str(requests)).splitlines()]
    assert [r["is_greedy"] for r in records] == [True, False]
    assert records[0]["logprob"] > records[1]["logprob"]
