"""A variant's gate becomes one of three verdicts: validated, inconclusive at this sample size, or
failed. "passed" used to include tasks whose interval merely reached the threshold; existing
variants are judged again from their Recovery rows (results 0004 judged those), and their gate
report says so in the new words."""

from django.db import migrations, models


def percent(x: float) -> str:
    return f"{x * 100:.10g}%"


def forward(apps, schema_editor) -> None:
    Variant = apps.get_model("catalog", "Variant")
    EvalRun = apps.get_model("results", "EvalRun")
    Recovery = apps.get_model("results", "Recovery")
    for v in Variant.objects.exclude(gate="pending").iterator():
        report = dict(v.gate_report or {})
        run = report.get("variant_run") or EvalRun.objects.filter(variant=v).order_by("-created_at").values_list("pk", flat=True).first()
        rows = list(Recovery.objects.filter(variant_run=run).order_by("task"))
        if not rows:
            # nothing to judge again: a gate with no recorded recovery keeps its meaning
            v.gate = "validated" if v.gate == "passed" else v.gate
            v.save(update_fields=["gate"])
            continue
        # as evals.recovery decides it, when this migration was written
        verdicts = [r.verdict for r in rows]
        v.gate = "failed" if "failed" in verdicts else "inconclusive" if "inconclusive" in verdicts else "validated"
        at = percent(report.get("threshold", rows[0].threshold))
        failed = [r.task for r in rows if r.verdict == "failed"]
        unsettled = [r for r in rows if r.verdict == "inconclusive"]
        if failed:
            summary = f"failed: the 95% interval of the recovery lies below {at} on {', '.join(failed)}"
        elif unsettled:
            summary = f"inconclusive at this sample size: the 95% interval of the recovery straddles {at} on " + "; ".join(
                f"{r.task}: {r.verdict_note}" for r in unsettled
            )
        else:
            summary = f"validated: the 95% interval of every task's recovery lies at or above {at}"
        tasks = report.get("tasks") or {}
        for r in rows:
            tasks[r.task] = {
                **{k: val for k, val in (tasks.get(r.task) or {}).items() if k != "passed"},
                "recovery_low": r.recovery_low,
                "recovery_high": r.recovery_high,
                "verdict": r.verdict,
                "documents_needed": r.documents_needed,
                "note": r.verdict_note,
            }
        report.pop("passed", None)
        v.gate_report = {**report, "verdict": v.gate, "summary": summary, "tasks": tasks}
        v.save(update_fields=["gate", "gate_report"])


def backward(apps, schema_editor) -> None:
    Variant = apps.get_model("catalog", "Variant")
    Variant.objects.filter(gate__in=["validated", "inconclusive"]).update(gate="passed")


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0003_base_model_on_this_hub"),
        ("results", "0004_recovery_verdict"),
    ]

    operations = [
        migrations.AlterField(
            model_name="variant",
            name="gate",
            field=models.CharField(
                choices=[
                    ("pending", "validation pending"),
                    ("validated", "validated"),
                    ("inconclusive", "inconclusive at this sample size"),
                    ("failed", "failed"),
                ],
                default="pending",
                max_length=16,
            ),
        ),
        migrations.RunPython(forward, backward),
    ]
