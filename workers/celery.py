"""The Celery app, configured from Django settings (CELERY_*). Importing it pulls in no heavy
library: stage bodies import torch and friends only when they run."""

import os
import sys

from celery import Celery
from celery.signals import worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")

app = Celery("hub", include=["workers.tasks"])
app.config_from_object("django.conf:settings", namespace="CELERY")


def worker_command(name: str, queues: str = "cpu,gpu") -> list[str]:
    """The command line of one worker process that runs one stage at a time, as the tests and the
    benches start it: it talks to no other worker, so it starts fast and stops cleanly."""
    return [
        sys.executable, "-m", "celery", "-A", "workers", "worker", "-Q", queues, "-P", "solo", "-n", name,
        "--loglevel=INFO", "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]  # fmt: skip


@worker_ready.connect
def reconcile_on_start(sender, **kwargs) -> None:
    """A worker that starts cannot be running anything yet: stages still marked running under
    its name were orphaned when its previous incarnation died."""
    from hub.jobs.models import Stage

    Stage.reconcile(worker_restarted=sender.hostname)
