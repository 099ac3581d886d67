"""A whole job, baseline to validate, in a real `celery worker` process that has no network:
stories260k pruned 2:4 by the real compress stage, evaluated from the local fixtures."""

import pytest
from django.core.management import call_command

from hub.catalog.models import BaseModel, Variant
from hub.jobs.models import Job, Recipe, Stage
from hub.results.models import EvalRun, Recovery
from tests.evals.conftest import TINY_YAML
from tests.helpers import ROOT, wait_for

pytestmark = pytest.mark.slow

# Loaded by the worker's interpreter at start-up (it is first on PYTHONPATH): refuses every
# connection and name lookup except unix sockets and the broker, and logs each attempt.
NO_NETWORK = """\
import os, socket, sys

_allowed = set(filter(None, os.environ.get("NO_NETWORK_ALLOW", "").split(",")))
_log = os.environ["NO_NETWORK_LOG"]


def _refuse(what):
    with open(_log, "a") as f:
        f.write(what + "\\n")


def _hook(event, args):
    if event == "socket.connect":
        sock, address = args
        if sock.family == socket.AF_UNIX or (isinstance(address, tuple) and f"{address[0]}:{address[1]}" in _allowed):
            return
        _refuse(f"connect {address}")
        raise ConnectionRefusedError(f"no network: connect to {address}")
    if event == "socket.getaddrinfo" and f"{args[0]}:{args[1]}" not in _allowed:
        _refuse(f"getaddrinfo {args[0]}:{args[1]}")
        raise socket.gaierror(f"no network: lookup of {args[0]}")


sys.addaudithook(_hook)
"""


def test_it_validates_a_compressed_variant_in_a_worker_without_network(
    start_worker, stories260k, data_dir, isolated_storage, settings, tmp_path
):
    from urllib.parse import urlsplit

    call_command("import_model", str(stories260k))
    (tmp_path / "tiny.yaml").write_text(TINY_YAML)
    job = Job.submit(
        base_model=BaseModel.objects.get(name="stories260k"),
        recipes=[Recipe.for_preset("2of4-magnitude")],
        suite=str(tmp_path / "tiny.yaml"),
        benchmark_profile="",
    )
    (tmp_path / "hook").mkdir()
    (tmp_path / "hook" / "sitecustomize.py").write_text(NO_NETWORK)
    broker = urlsplit(settings.CELERY_BROKER_URL)
    attempts = tmp_path / "network-attempts.log"
    start_worker(
        "evals@localhost",
        PYTHONPATH=f"{tmp_path / 'hook'}:{ROOT}",
        NO_NETWORK_LOG=str(attempts),
        NO_NETWORK_ALLOW=f"{broker.hostname}:{broker.port}" if broker.hostname else "",
        HUB_ARTIFACTS_DIR=str(settings.ARTIFACTS_DIR),
        HUB_EVAL_DATA_DIR=str(data_dir),
        HF_HOME=str(tmp_path / "hf"),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        OMP_NUM_THREADS="1",  # tiny models; a second thread only stalls on a busy machine
    )
    validate = job.stages.get(kind="validate")
    wait_for(lambda: Stage.objects.get(pk=validate.pk).status in Stage.FINAL, 600, "validate to end")
    validate.refresh_from_db()
    assert validate.status == Stage.Status.DONE, validate.error
    assert not attempts.exists(), attempts.read_text()

    variant = Variant.objects.get(job=job)
    base_run = EvalRun.objects.get(base_model=job.base_model)
    variant_run = EvalRun.objects.get(variant=variant)
    assert variant_run.settings_key == base_run.settings_key
    recoveries = Recovery.objects.filter(variant_run=variant_run)
    assert recoveries.count() == 4 and {r.threshold for r in recoveries} == {0.96}
    assert variant.gate == variant.gate_report["verdict"] != Variant.Gate.PENDING
    assert "reusing" not in job.stages.get(kind="baseline").log
