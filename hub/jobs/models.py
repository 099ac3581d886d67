"""Jobs and their stages. The database is the source of truth: every transition is a
conditional UPDATE, so a duplicate or late Celery message can never run a stage twice, and a
lost one can be recovered from the rows alone (see `Stage.reconcile`)."""

import logging
import math
import statistics
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import models, transaction
from django.db.models import F
from django.utils import timezone

from hub.catalog.models import BaseModel, OwnedQuerySet
from hub.jobs.presets import PRESETS

if TYPE_CHECKING:
    from hub.suites.models import Suite

log = logging.getLogger(__name__)
LOG_TAIL_CHARS = 64 * 1024


class QuotaExceeded(Exception):
    """A per-user submission limit refuses this job for now; `retry_after` is in seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Recipe(models.Model):
    """A named, versioned compression recipe: a preset, or a user's recipe in the
    llm-compressor YAML shape."""

    name = models.CharField(max_length=100)
    version = models.PositiveIntegerField(default=1)
    preset = models.BooleanField(default=False)
    scheme = models.CharField(max_length=50, blank=True)
    yaml = models.TextField(blank=True, help_text="empty for presets: the compression library defines them")
    description = models.CharField(max_length=500, blank=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["name", "version"], name="recipe_name_version")]
        ordering = ["name", "-version"]

    def __str__(self) -> str:
        return self.name if self.preset else f"{self.name} v{self.version}"

    @classmethod
    def for_preset(cls, name: str) -> "Recipe":
        if name not in PRESETS:
            raise ValueError(f"unknown recipe preset {name!r}; known presets: {', '.join(PRESETS)}")
        preset = PRESETS[name]
        recipe, _ = cls.objects.get_or_create(
            name=name,
            version=1,
            defaults={"preset": True, "scheme": preset.scheme, "description": preset.description},
        )
        return recipe

    @property
    def content(self) -> str:
        """What the recipe computes: a preset's name, or a pasted recipe's text."""
        return f"preset:{self.name}" if self.preset else f"yaml:{self.yaml.strip()}"

    @property
    def recovery_threshold(self) -> float:
        preset = PRESETS.get(self.name) if self.preset else None
        return preset.recovery_threshold if preset else 0.96


class JobQuerySet(OwnedQuerySet):
    base_lookup = "base_model"

    def identical(
        self, base: BaseModel, presets: list[str], recipe_yaml: str, suite: str, profile: str, targets: list[str]
    ) -> "Job | None":
        """The newest queued, running or done job that would compute exactly what this submission
        asks for: the same base model (so the same fetched revision), recipes of the same content
        (`Recipe.content`: a preset by name, a pasted recipe by its text, whatever it is called),
        suite, benchmark profile and publish targets."""
        wanted = sorted(
            [*(f"preset:{name}" for name in presets), *([f"yaml:{recipe_yaml.strip()}"] if recipe_yaml else [])]
        )
        candidates = self.filter(
            base_model=base,
            suite=suite,
            benchmark_profile=profile,
            status__in=(*Job.ACTIVE, Job.Status.DONE),
        ).prefetch_related("recipes")
        for job in candidates.order_by("-created_at")[:50]:
            if job.publish_targets == targets and sorted(r.content for r in job.recipes.all()) == wanted:
                return job
        return None

    def with_running_stages(self) -> "JobQuerySet":
        """Each job with `running_stages`, the stages a worker is running for it now."""
        running = Stage.objects.filter(status=Stage.Status.RUNNING).select_related("recipe").order_by("started_at")
        return self.prefetch_related(models.Prefetch("stages", queryset=running, to_attr="running_stages"))


class Job(models.Model):
    objects = JobQuerySet.as_manager()

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"
        CANCELLED = "cancelled"

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs"
    )
    base_model = models.ForeignKey(BaseModel, on_delete=models.PROTECT, related_name="jobs")
    recipes = models.ManyToManyField(Recipe, related_name="jobs")
    suite = models.CharField(
        max_length=100,
        blank=True,
        default="quick",
        help_text="eval suite: a built-in one's name, or a user suite's owner/name@version; blank skips validation",
    )
    user_suite = models.ForeignKey(
        "suites.Suite",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="jobs",
        help_text="the user suite version `suite` names: once a job used it, it never changes",
    )
    benchmark_profile = models.CharField(max_length=100, blank=True, default="chat", help_text="blank skips benchmarks")
    publish_targets = models.JSONField(default=list, blank=True, help_text="extra targets beyond the hub itself")
    rerun_of = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        help_text="the identical job a user asked to run again",
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    cancel_requested = models.BooleanField(default=False)
    private = models.BooleanField(default=False)
    error = models.TextField(blank=True)
    versions = models.JSONField(default=dict, blank=True, help_text="library versions each stage ran with")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    ACTIVE = (Status.QUEUED, Status.RUNNING)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"job {self.pk} ({self.base_model})"

    @classmethod
    def submit(
        cls,
        *,
        base_model: BaseModel,
        recipes: list[Recipe],
        owner=None,
        suite: str = "quick",
        user_suite: "Suite | None" = None,
        benchmark_profile: str = "chat",
        publish_targets: list[str] | None = None,
        private: bool = False,
        rerun_of: "Job | None" = None,
    ) -> "Job":
        """Create the job and its stage graph in one transaction; enqueue once it commits.
        `user_suite`: the user suite version `suite` names, if it names one."""
        if not recipes:
            raise ValueError("a job needs at least one recipe")
        with transaction.atomic():
            job = cls.objects.create(
                owner=owner,
                base_model=base_model,
                suite=suite,
                user_suite=user_suite,
                benchmark_profile=benchmark_profile,
                publish_targets=publish_targets or [],
                private=private,
                rerun_of=rerun_of,
            )
            job.recipes.set(recipes)
            fetch = job.add_stage(Stage.Kind.FETCH)
            baseline = job.add_stage(Stage.Kind.BASELINE, after=[fetch]) if suite else None
            for recipe in recipes:
                compress = job.add_stage(Stage.Kind.COMPRESS, recipe, after=[fetch])
                gates = [compress]
                if baseline:
                    gates.append(job.add_stage(Stage.Kind.VALIDATE, recipe, after=[compress, baseline]))
                if benchmark_profile:
                    gates.append(job.add_stage(Stage.Kind.BENCHMARK, recipe, after=[compress]))
                job.add_stage(Stage.Kind.PUBLISH, recipe, after=gates)
            transaction.on_commit(job.dispatch)
        return job

    def form_fields(self) -> dict:
        """This job as the submission form's fields, to edit and submit anew."""
        recipes = list(self.recipes.all())
        pasted = next((r for r in recipes if not r.preset), None)
        return {
            "base": self.base_model_id,
            "presets": [r.name for r in recipes if r.preset],
            "recipe_yaml": pasted.yaml if pasted else "",
            "recipe_name": pasted.name if pasted else "",
            "suite": self.suite,
            "benchmark_profile": self.benchmark_profile,
            "publish_targets": "\n".join(self.publish_targets),
            "private": self.private,
        }

    @staticmethod
    def planned_stages(recipes: int, suite: str, benchmark_profile: str) -> int:
        """How many stages `submit` creates for this many recipes."""
        return 1 + bool(suite) + recipes * (2 + bool(suite) + bool(benchmark_profile))

    @classmethod
    def admit(cls, user, reviving: "Job | None" = None) -> None:
        """Raise QuotaExceeded unless `user` may add an active job now: a new one, or `reviving`,
        a finished job that a retry would run again. Call it inside the transaction that creates
        (or revives) the job: it locks the user's row to the end of that transaction, so that two
        submissions at once are counted one after the other. Staff are not limited."""
        if user.is_staff:
            return
        list(get_user_model().objects.select_for_update().filter(pk=user.pk).values_list("pk"))
        mine = cls.objects.filter(owner=user)
        active = mine.filter(status__in=cls.ACTIVE)
        if reviving is not None and active.filter(pk=reviving.pk).exists():
            return
        count, limit = active.count(), settings.MAX_ACTIVE_JOBS
        if count >= limit:
            raise QuotaExceeded(
                f"you have {count} queued or running job{'s' * (count != 1)}; the limit is {limit} per user: "
                "submit again when one of them finishes, or cancel one",
                retry_after=60,
            )
        if reviving is not None:
            return
        now, limit = timezone.now(), settings.MAX_SUBMISSIONS_PER_MINUTE
        recent = list(
            mine.filter(created_at__gt=now - timedelta(minutes=1))
            .order_by("created_at")
            .values_list("created_at", flat=True)
        )
        if len(recent) >= limit:
            # a slot frees when the oldest submission that keeps the count at the limit turns a minute old
            wait = math.ceil((recent[len(recent) - limit] + timedelta(minutes=1) - now).total_seconds())
            raise QuotaExceeded(
                f"you submitted {len(recent)} job{'s' * (len(recent) != 1)} in the last minute; the limit is {limit} "
                f"a minute per user: try again in {max(wait, 1)} s",
                retry_after=max(wait, 1),
            )

    def add_stage(self, kind: str, recipe: Recipe | None = None, after: list["Stage"] = ()) -> "Stage":
        stage = Stage.objects.create(job=self, kind=kind, recipe=recipe, queue=Stage.QUEUES[kind])
        stage.depends_on.set(after)
        return stage

    def manageable_by(self, user) -> bool:
        return Job.objects.manageable_by(user).filter(pk=self.pk).exists()

    def dispatch(self) -> None:
        """Queue every waiting stage whose dependencies are done."""
        for stage in self.stages.filter(status=Stage.Status.PENDING).prefetch_related("depends_on"):
            if all(dep.status == Stage.Status.DONE for dep in stage.depends_on.all()):
                if Stage.objects.filter(pk=stage.pk, status=Stage.Status.PENDING).update(
                    status=Stage.Status.QUEUED, enqueued_at=timezone.now(), message="queued"
                ):
                    transaction.on_commit(stage.send)
        self.refresh_status()

    def refresh_status(self) -> None:
        """Derive the job's status from its stages."""
        self.refresh_from_db(fields=["cancel_requested", "started_at"])  # another process may have cancelled
        statuses = set(self.stages.values_list("status", flat=True))
        S = Stage.Status
        if statuses & {S.RUNNING}:
            status = self.Status.RUNNING
        elif statuses & {S.QUEUED, S.PENDING} and not self.cancel_requested:
            status = self.Status.RUNNING if statuses & {S.DONE, S.FAILED} else self.Status.QUEUED
        elif self.cancel_requested:
            status = self.Status.CANCELLED
        elif statuses & {S.FAILED, S.CANCELLED}:
            status = self.Status.FAILED
        else:
            status = self.Status.DONE
        final = status in (self.Status.DONE, self.Status.FAILED, self.Status.CANCELLED)
        updates = {"status": status, "finished_at": timezone.now() if final else None}
        if status == self.Status.RUNNING and not self.started_at:
            updates["started_at"] = timezone.now()
        if status == self.Status.FAILED:
            failed = self.stages.filter(status=S.FAILED).first()
            updates["error"] = (
                f"{failed.name}: {failed.error.splitlines()[0] if failed.error else 'failed'}" if failed else ""
            )
        elif status != self.Status.CANCELLED:
            updates["error"] = ""
        Job.objects.filter(pk=self.pk).update(**updates)
        for key, value in updates.items():
            setattr(self, key, value)

    @staticmethod
    def cancel_requested_for(job_id: int, lock: bool = False) -> bool:
        """Whether the job was asked to stop; `lock` holds its row to the end of the transaction,
        so no cancel can be committed between this answer and what the caller writes."""
        jobs = Job.objects.select_for_update() if lock else Job.objects
        return jobs.filter(pk=job_id, cancel_requested=True).exists()

    def cancel(self) -> None:
        """Stop the job: waiting stages are cancelled now, a running stage at its next check."""
        with transaction.atomic():
            Job.objects.filter(pk=self.pk).update(cancel_requested=True)
            self.cancel_requested = True
            self.stages.filter(status__in=[Stage.Status.PENDING, Stage.Status.QUEUED]).update(
                status=Stage.Status.CANCELLED, message="cancelled", finished_at=timezone.now()
            )
            self.refresh_status()

    def record_versions(self, versions: dict) -> None:
        with transaction.atomic():
            job = Job.objects.select_for_update().get(pk=self.pk)
            job.versions = {**job.versions, **versions}
            job.save(update_fields=["versions"])


# past stages guess a waiting stage's run time only from models within this factor of its size
SIZE_BAND = 2


class Stage(models.Model):
    class Kind(models.TextChoices):
        FETCH = "fetch"
        BASELINE = "baseline"
        COMPRESS = "compress"
        VALIDATE = "validate"
        BENCHMARK = "benchmark"
        PUBLISH = "publish"

    class Status(models.TextChoices):
        PENDING = "pending", "waiting"
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"
        CANCELLED = "cancelled"
        SKIPPED = "skipped"

    # Stages that use the model's weights heavily run on the GPU queue (one solo worker per GPU).
    QUEUES = {
        Kind.FETCH: "cpu",
        Kind.BASELINE: "gpu",
        Kind.COMPRESS: "gpu",
        Kind.VALIDATE: "gpu",
        Kind.BENCHMARK: "gpu",
        Kind.PUBLISH: "cpu",
    }
    FINAL = (Status.DONE, Status.FAILED, Status.CANCELLED, Status.SKIPPED)
    RETRYABLE = (Status.FAILED, Status.CANCELLED, Status.SKIPPED)  # what a retry may run again

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="stages")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    recipe = models.ForeignKey(Recipe, null=True, blank=True, on_delete=models.PROTECT)
    depends_on = models.ManyToManyField("self", symmetrical=False, related_name="dependents", blank=True)
    queue = models.CharField(max_length=16, default="cpu")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)
    progress = models.FloatField(default=0.0)
    message = models.CharField(max_length=500, blank=True)
    attempt = models.PositiveIntegerField(default=0)
    worker = models.CharField(max_length=200, blank=True)
    log = models.TextField(blank=True)
    error = models.TextField(blank=True)
    # False when the stage (or one it waited for) failed on something the same job meets every
    # time, such as a recipe the model cannot take: the job has to change, not run again
    retry_helps = models.BooleanField(default=True)
    outputs = models.JSONField(default=dict, blank=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["status", "heartbeat_at"])]

    def __str__(self) -> str:
        return f"{self.name} of job {self.job_id}"

    @property
    def name(self) -> str:
        return f"{self.kind} ({self.recipe.name})" if self.recipe_id else self.kind

    def _ahead(self) -> models.QuerySet["Stage"]:
        """The stages a worker of this stage's queue takes before it: those running on the
        queue, and those queued on it earlier."""
        on_queue = Stage.objects.filter(queue=self.queue).exclude(pk=self.pk)
        earlier = models.Q(enqueued_at__lt=self.enqueued_at) | models.Q(enqueued_at=self.enqueued_at, pk__lt=self.pk)
        return on_queue.filter(models.Q(status=self.Status.RUNNING) | (models.Q(status=self.Status.QUEUED) & earlier))

    def ahead_in_queue(self) -> int:
        return self._ahead().count()

    def queue_wait(self, now: datetime) -> timedelta | None:
        """How long until a worker of this stage's queue is expected to take it: what is left of
        each stage ahead of it (`remaining`, on the stage's own model size). None when one of
        them has no history to estimate from: a sum that leaves a stage out would promise too
        early a start."""
        typical: dict[int | None, dict[str, timedelta]] = {}
        wait = timedelta()
        for stage in self._ahead().select_related("job__base_model"):
            size = stage.job.base_model.num_parameters
            if size not in typical:
                typical[size] = Stage.typical_durations(size)
            left = stage.remaining(typical[size], now)
            if left is None:
                return None
            wait += left
        return wait

    def remaining(self, typical: dict[str, timedelta], now: datetime) -> timedelta | None:
        """What is left of this stage's run time: a running stage's elapsed time scaled by its
        progress (until it reports enough progress to go by, its kind's `typical` time less the
        elapsed), a waiting one's typical time; None when there is nothing to go by."""
        if self.status == self.Status.RUNNING and self.started_at:
            elapsed = now - self.started_at
            if self.progress >= 0.02:
                return elapsed * (1 - self.progress) / self.progress
            return max(typical[self.kind] - elapsed, timedelta()) if self.kind in typical else None
        if self.status in (self.Status.PENDING, self.Status.QUEUED):
            return typical.get(self.kind)
        return None

    @classmethod
    def typical_durations(cls, num_parameters: int | None) -> dict[str, timedelta]:
        """The median run time of each kind of stage over recent finished ones on models of about
        this size (within SIZE_BAND either way): the guess for a stage that has not started. Run
        time grows with the model but not in proportion (a 500x larger model does not take 500x
        longer), so runs on other sizes tell nothing and no guess is better than a wrong one."""
        if not num_parameters:
            return {}
        rows = (
            cls.objects.filter(
                status=cls.Status.DONE,
                started_at__isnull=False,
                finished_at__isnull=False,
                job__base_model__num_parameters__gte=num_parameters / SIZE_BAND,
                job__base_model__num_parameters__lte=num_parameters * SIZE_BAND,
            )
            .order_by("-finished_at")
            .values_list("kind", "started_at", "finished_at")[:500]
        )
        took: dict[str, list[float]] = {}
        for kind, start, end in rows:
            if len(took.setdefault(kind, [])) < 20:
                took[kind].append((end - start).total_seconds())
        return {kind: timedelta(seconds=statistics.median(seconds)) for kind, seconds in took.items()}

    def send(self) -> None:
        """Hand the stage to Celery by task name. A broker that is down loses nothing: the
        stage stays queued and the reconciler sends it again."""
        from workers.celery import app

        try:
            app.send_task("workers.run_stage", args=[self.pk], queue=self.queue)
        except Exception as exc:  # noqa: BLE001 - any broker failure is recovered the same way
            log.warning("could not enqueue %s (%s); the reconciler will retry", self, exc)

    # -- transitions made by the worker that runs the stage ------------------------------------

    def claim(self, worker: str) -> bool:
        """Take a queued stage; False when another worker has it or it is no longer wanted."""
        now = timezone.now()
        claimed = Stage.objects.filter(pk=self.pk, status=self.Status.QUEUED, job__cancel_requested=False).update(
            status=self.Status.RUNNING,
            attempt=F("attempt") + 1,
            worker=worker,
            started_at=now,
            heartbeat_at=now,
            finished_at=None,
            progress=0.0,
            message="started",
            error="",
        )
        if claimed:
            self.refresh_from_db()
            self.job.refresh_status()
        return bool(claimed)

    def _mine(self):
        return Stage.objects.filter(pk=self.pk, status=self.Status.RUNNING, attempt=self.attempt)

    def beat(self, progress: float | None = None, message: str | None = None, log_lines: str = "") -> bool:
        """Record liveness (and progress); False once this attempt no longer owns the stage."""
        updates = {"heartbeat_at": timezone.now()}
        if progress is not None:
            updates["progress"] = max(0.0, min(1.0, progress))
        if message is not None:
            updates["message"] = message[:500]
        if log_lines:
            self.log = (self.log + log_lines)[-LOG_TAIL_CHARS:]
            updates["log"] = self.log
        return bool(self._mine().update(**updates))

    def finish(self, outputs: dict) -> bool:
        """Mark done; call inside the transaction that records the stage's rows, so the rows
        and the status land together or not at all."""
        done = self._mine().update(
            status=self.Status.DONE, outputs=outputs, progress=1.0, message="done", finished_at=timezone.now()
        )
        if done:
            self.status = self.Status.DONE
        return bool(done)

    def fail(self, error: str, status: str = Status.FAILED, retry_helps: bool = True) -> bool:
        """Record the error and stop every stage that depends on this one. `retry_helps` is False
        for a failure the same inputs always meet."""
        with transaction.atomic():
            failed = self._mine().update(
                status=status,
                error=error,
                message=error.splitlines()[0][:500] if error else status,
                finished_at=timezone.now(),
                retry_helps=retry_helps,
            )
            if failed:
                self.status, self.retry_helps = status, retry_helps
                self.skip_dependents(f"skipped: {self.name} {status}", retry_helps)
                self.job.refresh_status()
        return bool(failed)

    def skip_dependents(self, reason: str, retry_helps: bool = True) -> None:
        frontier = list(self.dependents.all())
        while frontier:
            stage = frontier.pop()
            if Stage.objects.filter(pk=stage.pk, status=self.Status.PENDING).update(
                status=self.Status.SKIPPED, message=reason[:500], retry_helps=retry_helps
            ):
                frontier.extend(stage.dependents.all())

    # -- transitions asked for by people ---------------------------------------------------------

    def retry(self, by=None) -> None:
        """Run this stage again, and then whatever its failure stopped; done stages stay done.
        A job that had finished becomes active again: within `by`'s limits (Job.admit)."""
        if self.status not in self.RETRYABLE:
            raise ValueError(f"only a failed, cancelled or skipped stage can be retried; {self.name} is {self.status}")
        if not self.retry_helps:
            raise ValueError(
                f"{self.name} failed on what this job asks for, and would fail the same way again: "
                "edit the job and submit it anew"
            )
        with transaction.atomic():
            if by is not None:
                Job.admit(by, reviving=self.job)
            Job.objects.filter(pk=self.job_id).update(cancel_requested=False, finished_at=None)
            self.job.cancel_requested = False
            to_reset, frontier = {self.pk}, [self]
            while frontier:
                for dep in frontier.pop().dependents.all():
                    if dep.pk not in to_reset:
                        to_reset.add(dep.pk)
                        frontier.append(dep)
            Stage.objects.filter(pk__in=to_reset, status__in=self.FINAL).exclude(status=self.Status.DONE).update(
                status=self.Status.PENDING,
                progress=0.0,
                message="waiting (retry)",
                error="",
                finished_at=None,
                retry_helps=True,
            )
            self.job.dispatch()

    # -- recovery --------------------------------------------------------------------------------

    @classmethod
    def reconcile(cls, worker_restarted: str | None = None) -> dict:
        """Repair what a dead worker or a lost broker message left behind.

        - a running stage whose worker stopped beating (or whose worker just restarted, so it
          cannot still be running) goes back to the queue, or fails after too many attempts;
        - a queued stage nobody claimed for a while is sent again (claims are idempotent);
        - waiting stages whose dependencies are done are queued (crash between two steps).
        """
        now = timezone.now()
        report = {"requeued": 0, "failed": 0, "resent": 0}
        orphans = cls.objects.filter(status=cls.Status.RUNNING).filter(
            models.Q(heartbeat_at__lt=now - timedelta(seconds=settings.STAGE_HEARTBEAT_TIMEOUT))
            | (models.Q(worker=worker_restarted) if worker_restarted else models.Q(pk__in=[]))
        )
        for stage in orphans.select_related("job", "recipe"):
            lost = f"worker {stage.worker or '?'} lost during attempt {stage.attempt} (last heartbeat {stage.heartbeat_at:%H:%M:%S})"
            if stage.attempt >= settings.STAGE_MAX_ATTEMPTS:
                if stage.fail(f"{lost}; giving up after {stage.attempt} attempts"):
                    report["failed"] += 1
                continue
            elif stage._mine().update(
                status=cls.Status.QUEUED,
                enqueued_at=now,
                message=f"{lost}; re-queued",
                heartbeat_at=None,
                log=(stage.log + f"[{now:%Y-%m-%d %H:%M:%S}] {lost}; re-queued\n")[-LOG_TAIL_CHARS:],
            ):
                transaction.on_commit(stage.send)
                report["requeued"] += 1
                stage.job.refresh_status()
        stale_queue = now - timedelta(seconds=settings.STAGE_REQUEUE_AFTER)
        for stage in cls.objects.filter(status=cls.Status.QUEUED, enqueued_at__lt=stale_queue):
            cls.objects.filter(pk=stage.pk, status=cls.Status.QUEUED).update(enqueued_at=now)
            stage.send()
            report["resent"] += 1
        for job in Job.objects.filter(status__in=Job.ACTIVE):
            job.dispatch()
        return report
