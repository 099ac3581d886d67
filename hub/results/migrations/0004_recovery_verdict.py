"""Recovery rows get the three verdicts (validated, inconclusive at this sample size, failed) in
place of `passed`, which called a task whose interval merely reached the threshold a pass.
Existing rows are judged again from what they stored: the 95% interval of the difference maps
onto the recovery as the validate stage maps it."""

import math

from django.db import migrations, models

# A frozen copy of evals.recovery's rule as it stood when this migration was written: the hub
# never imports the libraries, and a migration must keep meaning what it meant then.
MAX_DOCUMENTS = 1_000_000
CHOICES = [
    ("pending", "validation pending"),
    ("validated", "validated"),
    ("inconclusive", "inconclusive at this sample size"),
    ("failed", "failed"),
]


def ratio(base: float, variant: float, higher: bool) -> float:
    if higher:
        return variant / base if base > 0 else 1.0
    return base / variant if variant > 0 else 1.0


def judge(r, metrics: dict, results: dict) -> None:
    m = metrics.get(r.task) or {}
    higher = m.get("higher_is_better", True)
    # the recovery moves monotonically with the variant's value, so the interval maps over
    ends = sorted(ratio(r.base_value, r.base_value + d, higher) for d in (r.ci_low, r.ci_high) if d is not None)
    r.recovery_low, r.recovery_high = (ends[0], ends[-1]) if ends else (r.recovery, r.recovery)
    r.documents_needed, r.verdict_note = None, ""
    if r.recovery_low >= r.threshold:
        r.verdict = "validated"
    elif r.recovery_high < r.threshold:
        r.verdict = "failed"
    else:
        r.verdict = "inconclusive"
        n, gap = m.get("n"), abs(r.recovery - r.threshold)
        counts = results.get("n-samples") or {}
        try:
            available = sum(int(counts[leaf]["original"]) for leaf in m.get("tasks") or [r.task])
        except (KeyError, TypeError, ValueError):
            available = None
        needed = math.ceil(n * ((r.recovery_high - r.recovery_low) / 2 / gap) ** 2) if n and gap else None
        if needed is None or needed > MAX_DOCUMENTS:
            r.verdict_note = (
                f"more documents of this size cannot settle it: the recovery, {r.recovery:.2%}, is too close to the "
                f"threshold (settling it would take over {MAX_DOCUMENTS:,} documents)"
                if n
                else "the run recorded no document count to estimate how many would settle it"
            )
        else:
            r.documents_needed = needed = max(needed, n + 1)
            if available is not None and needed > available:
                r.verdict_note = f"about {needed:,} documents would settle it, more than the {available:,} the task has"
            else:
                of = f" of the task's {available:,}" if available is not None else ""
                r.verdict_note = f"about {needed:,} documents would settle it ({n:,} scored{of})"


def forward(apps, schema_editor) -> None:
    Recovery = apps.get_model("results", "Recovery")
    for r in Recovery.objects.select_related("variant_run").iterator():
        judge(r, r.variant_run.metrics or {}, r.variant_run.results or {})
        r.save(update_fields=["recovery_low", "recovery_high", "verdict", "documents_needed", "verdict_note"])


def backward(apps, schema_editor) -> None:
    # what `passed` meant: not failed
    apps.get_model("results", "Recovery").objects.exclude(verdict="failed").update(passed=True)


class Migration(migrations.Migration):
    dependencies = [
        ("results", "0003_benchmarkrun_records_sha256"),
    ]

    operations = [
        migrations.AddField(
            model_name="recovery",
            name="recovery_low",
            field=models.FloatField(null=True, help_text="95% interval of the recovery, low end"),
        ),
        migrations.AddField(
            model_name="recovery",
            name="recovery_high",
            field=models.FloatField(null=True, help_text="95% interval of the recovery, high end"),
        ),
        migrations.AddField(
            model_name="recovery",
            name="verdict",
            field=models.CharField(max_length=16, null=True, choices=CHOICES),
        ),
        migrations.AddField(
            model_name="recovery",
            name="documents_needed",
            field=models.PositiveIntegerField(
                blank=True, null=True, help_text="inconclusive only: about how many documents would settle it"
            ),
        ),
        migrations.AddField(
            model_name="recovery",
            name="verdict_note",
            field=models.CharField(
                blank=True, max_length=500, help_text="inconclusive only: what more documents would do, in words"
            ),
        ),
        # a default for `passed` while it goes, so that undoing this migration can add it back
        migrations.AlterField(model_name="recovery", name="passed", field=models.BooleanField(default=False)),
        migrations.RunPython(forward, backward),
        migrations.RemoveField(model_name="recovery", name="passed"),
        migrations.AlterField(
            model_name="recovery",
            name="recovery_low",
            field=models.FloatField(help_text="95% interval of the recovery, low end"),
        ),
        migrations.AlterField(
            model_name="recovery",
            name="recovery_high",
            field=models.FloatField(help_text="95% interval of the recovery, high end"),
        ),
        migrations.AlterField(
            model_name="recovery",
            name="verdict",
            field=models.CharField(max_length=16, choices=CHOICES),
        ),
        migrations.AlterField(
            model_name="recovery",
            name="recovery",
            field=models.FloatField(help_text="variant / base (base / variant when lower is better)"),
        ),
        migrations.AlterField(
            model_name="recovery",
            name="ci_low",
            field=models.FloatField(blank=True, null=True, help_text="95% interval of the difference, low end"),
        ),
        migrations.AlterField(
            model_name="recovery",
            name="ci_high",
            field=models.FloatField(blank=True, null=True, help_text="95% interval of the difference, high end"),
        ),
    ]
