"""Rows the workers write: accuracy runs, their comparison, and speed measurements. Each run
names exactly one model, a base or a variant."""

from django.db import models

from hub.catalog.models import BaseModel, Variant
from hub.jobs.presets import PROFILES


class MeasuredModel(models.Model):
    base_model = models.ForeignKey(BaseModel, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    variant = models.ForeignKey(Variant, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    stage = models.ForeignKey("jobs.Stage", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        abstract = True
        constraints = [
            models.CheckConstraint(
                condition=models.Q(base_model__isnull=False, variant__isnull=True)
                | models.Q(base_model__isnull=True, variant__isnull=False),
                name="%(class)s_one_model",
            )
        ]

    @property
    def model(self) -> BaseModel | Variant:
        return self.variant or self.base_model


class EvalRun(MeasuredModel):
    """One model on one suite with one engine version and settings."""

    suite = models.CharField(max_length=100)
    suite_version = models.CharField(max_length=50)
    engine_version = models.CharField(max_length=50)
    settings = models.JSONField(default=dict, help_text="everything that must match for a fair comparison")
    settings_key = models.CharField(max_length=64, db_index=True, help_text="sha256 of the settings above")
    model_revision = models.CharField(
        max_length=200,
        blank=True,
        help_text="a base's resolved revision when measured; baselines are reused only on the same one",
    )
    metrics = models.JSONField(default=dict, help_text="{task: {metric, value, stderr, n}}")
    results = models.JSONField(default=dict, help_text="lm-eval's full results JSON")
    samples_path = models.CharField(max_length=1000, blank=True, help_text="per-sample scores (JSON lines)")
    samples_sha256 = models.CharField(max_length=64, blank=True)
    duration_s = models.FloatField(null=True, blank=True)

    class Meta(MeasuredModel.Meta):
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.model} on {self.suite} {self.suite_version}"


class Recovery(models.Model):
    """A variant's metric over its base's, per task, between runs with identical settings."""

    variant_run = models.ForeignKey(EvalRun, on_delete=models.CASCADE, related_name="recoveries")
    base_run = models.ForeignKey(EvalRun, on_delete=models.CASCADE, related_name="+")
    task = models.CharField(max_length=100)
    metric = models.CharField(max_length=50)
    base_value = models.FloatField()
    variant_value = models.FloatField()
    recovery = models.FloatField(help_text="variant / base (base / variant when lower is better)")
    recovery_low = models.FloatField(help_text="95% interval of the recovery, low end")
    recovery_high = models.FloatField(help_text="95% interval of the recovery, high end")
    diff = models.FloatField(help_text="variant - base")
    diff_stderr = models.FloatField(null=True, blank=True, help_text="paired standard error of the difference")
    ci_low = models.FloatField(null=True, blank=True, help_text="95% interval of the difference, low end")
    ci_high = models.FloatField(null=True, blank=True, help_text="95% interval of the difference, high end")
    threshold = models.FloatField()
    # decided by evals.recovery: validated, inconclusive or failed, named as the Variant's gate
    verdict = models.CharField(max_length=16, choices=Variant.Gate.choices)
    documents_needed = models.PositiveIntegerField(
        null=True, blank=True, help_text="inconclusive only: about how many documents would settle it"
    )
    verdict_note = models.CharField(
        max_length=500, blank=True, help_text="inconclusive only: what more documents would do, in words"
    )

    class Meta:
        ordering = ["task"]
        constraints = [models.UniqueConstraint(fields=["variant_run", "task", "metric"], name="recovery_once")]

    def __str__(self) -> str:
        return f"{self.task} {self.metric}: {self.recovery:.1%}"

    @classmethod
    def record(cls, variant_run: EvalRun, base_run: EvalRun, recoveries: list) -> list["Recovery"]:
        """The run's rows, replaced by evals.recovery's judgement of it (its TaskRecovery list)."""
        cls.objects.filter(variant_run=variant_run).delete()
        return cls.objects.bulk_create(
            cls(
                variant_run=variant_run,
                base_run=base_run,
                task=r.task,
                metric=r.metric,
                base_value=r.base_value,
                variant_value=r.variant_value,
                recovery=r.recovery,
                recovery_low=r.recovery_low,
                recovery_high=r.recovery_high,
                diff=r.diff,
                diff_stderr=r.diff_stderr,
                ci_low=r.ci_low,
                ci_high=r.ci_high,
                threshold=r.threshold,
                verdict=Variant.Gate(r.verdict),
                documents_needed=r.documents_needed,
                verdict_note=r.note,
            )
            for r in recoveries
        )


class BenchmarkRun(MeasuredModel):
    profile = models.CharField(max_length=100)
    profile_version = models.CharField(max_length=50)
    engine_version = models.CharField(max_length=50)
    hardware = models.JSONField(default=dict, help_text="GPU name, memory, compute capability, driver; or CPU")
    settings = models.JSONField(default=dict)
    metrics = models.JSONField(default=dict, help_text="TTFT, TPOT, ITL, E2E percentiles; throughput; memory")
    runnable = models.BooleanField(default=True, help_text="false when the hardware cannot run the scheme")
    reason = models.CharField(max_length=500, blank=True)
    records_path = models.CharField(max_length=1000, blank=True, help_text="raw per-request records (JSON)")
    records_sha256 = models.CharField(max_length=64, blank=True)

    class Meta(MeasuredModel.Meta):
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.model} on {self.profile}"

    @property
    def profile_label(self) -> str:
        """The profile as a reader needs it: "chat v1 (512 tokens in, 256 out)", and the lengths
        actually sent when the run was scaled down (a CPU run sends an eighth of them)."""
        what = PROFILES.get(self.profile, "").removeprefix(f"{self.profile}: ")
        label = f"{self.profile} v{self.profile_version}" + (f" ({what})" if what else "")
        s = self.settings or {}
        if s.get("scale", 1) != 1 and "input_len" in s:
            label += f", run at scale {s['scale']:g}: {s['input_len']} tokens in, {s['output_len']} out"
        return label
