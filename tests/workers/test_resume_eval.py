"""A worker SIGKILLed in the middle of a baseline: the stage comes back with the worker, restores
every request the killed attempt stored, scores only the rest, and records exactly the results of
an uninterrupted run."""

import re
import signal
import sqlite3

import pytest
import torch
from django.core.management import call_command

from evals import EvalOptions, prepare, run
from evals.run import read_samples
from hub.catalog.models import BaseModel
from hub.jobs.models import Job, Recipe, Stage
from hub.results.models import EvalRun
from tests.helpers import wait_for

pytestmark = [pytest.mark.services, pytest.mark.slow]

# about 600 requests: some seconds of scoring on stories260k, in units of a few percent each
SUITE = """\
suite: kill
version: "1"
description: a suite to kill a worker in
tasks:
  - {task: arc_easy, limit: 100, metric: acc_norm}
  - {task: winogrande, limit: 100, metric: acc}
"""


def stored(folder) -> int:
    """Requests in the one request store under `folder`, read as another process would."""
    files = list(folder.glob("*.sqlite3")) if folder.exists() else []
    if not files:
        return 0
    with sqlite3.connect(f"file:{files[0]}?mode=ro", uri=True, timeout=30) as db:
        try:
            return db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
        except sqlite3.OperationalError:  # the worker has not made the table yet
            return 0


def test_it_resumes_a_baseline_whose_worker_was_killed(start_worker, stories260k, fixtures_dir, settings, tmp_path):
    data_dir = fixtures_dir / "datasets"
    suite = tmp_path / "kill.yaml"
    suite.write_text(SUITE)
    # the uninterrupted run, on one thread as the worker runs
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        plan = prepare(stories260k, suite, EvalOptions(data_dir=data_dir))
        uninterrupted = run(plan)
    finally:
        torch.set_num_threads(threads)
    total = uninterrupted.requests["scored"]

    call_command("import_model", str(stories260k))
    job = Job.submit(
        base_model=BaseModel.objects.get(name="stories260k"),
        recipes=[Recipe.for_preset("2of4-magnitude")],
        suite=str(suite),
        benchmark_profile="",
    )
    env = {
        "HUB_EVAL_DATA_DIR": str(data_dir),
        "HF_HOME": str(tmp_path / "hf"),
        "HF_DATASETS_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
    }
    worker = start_worker("evals@localhost", **env)
    store = settings.ARTIFACTS_DIR / "eval-requests"
    wait_for(lambda: stored(store) >= total / 2, 600, "half of the requests to be stored")
    worker.kill(signal.SIGKILL)
    kept = stored(store)
    baseline = job.stages.get(kind="baseline")
    assert (baseline.status, baseline.attempt) == (Stage.Status.RUNNING, 1)
    assert total / 2 <= kept < total

    start_worker("evals@localhost", **env)  # it re-queues what it was running, and runs it again
    wait_for(lambda: job.stages.get(kind="baseline").status in Stage.FINAL, 600, "the baseline to end")
    job.cancel()  # what follows is not under test
    baseline.refresh_from_db()
    assert (baseline.status, baseline.attempt) == (Stage.Status.DONE, 2), baseline.error
    scored, restored = map(int, re.search(r"requests: (\d+) scored, (\d+) restored", baseline.log).groups())
    # every request the killed attempt stored comes back; only the missing ones are scored
    assert (restored, scored) == (kept, total - kept)
    assert not store.exists() or not list(store.iterdir())  # gone once the results are recorded

    result = EvalRun.objects.get(pk=baseline.outputs["eval_run"])
    assert result.settings_key == plan.settings_key
    assert result.metrics == uninterrupted.metrics
    assert read_samples(result.samples_path, result.samples_sha256) == uninterrupted.samples
