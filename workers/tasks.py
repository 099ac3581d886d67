from celery import shared_task

from workers.runner import execute


@shared_task(name="workers.run_stage", bind=True, acks_late=True, reject_on_worker_lost=True)
def run_stage(self, stage_id: int) -> str:
    return execute(stage_id, worker=self.request.hostname or "unknown")


@shared_task(name="workers.reconcile", ignore_result=True)
def reconcile() -> dict:
    from hub.jobs.models import Stage

    return Stage.reconcile()
