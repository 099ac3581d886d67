"""compress: apply the stage's recipe to the base snapshot and catalog the result as a Variant."""

from pathlib import Path

from django.conf import settings

from hub.catalog.checkpoints import sha256_file
from hub.catalog.models import Variant
from workers.runner import StageError, StageRefused, StageResult


def compress_stage(stage, ctx) -> StageResult:
    from compress import CalibrationConfig, CalibrationError, compress

    job, base, recipe = stage.job, stage.job.base_model, stage.recipe
    if not base.local_path:
        raise StageError(f"{base.name} has no verified snapshot on this hub (did fetch run?)")
    # One folder per attempt: an attempt that died mid-save leaves nothing at its own path,
    # and never collides with the next one.
    out_dir = settings.ARTIFACTS_DIR / "variants" / f"job{job.pk}" / f"{recipe.name}-{stage.attempt}"
    calibration = None
    if settings.CALIBRATION_DATASET:
        calibration = CalibrationConfig(
            dataset=settings.CALIBRATION_DATASET,
            num_samples=settings.CALIBRATION_SAMPLES or None,
            seq_len=settings.CALIBRATION_SEQ_LEN or None,
        )
    ctx.logger.info("compressing %s with %s into %s", base.name, recipe, out_dir)
    try:
        report = compress(
            Path(base.local_path),
            recipe.name if recipe.preset else recipe.yaml,
            out_dir,
            calibration=calibration,
            progress=ctx.progress,
            cancelled=ctx.cancelled,
        )
    except CalibrationError as exc:
        # Air-gapped hubs meet this first: the recipe's default calibration set lives on the HF hub.
        hint = (
            ""
            if calibration
            else (
                " (this is the recipe's default calibration data: set HUB_CALIBRATION_DATASET"
                " on the worker to a local .txt, .jsonl or .json file or folder, then retry)"
            )
        )
        raise StageError(f"{recipe}: {exc}{hint}") from None
    except (ValueError, NotImplementedError) as exc:  # the recipe and the model do not fit
        raise StageRefused(f"{recipe}: {exc}") from None
    files = [{"path": f["path"], "size": f["bytes"], "sha256": f["sha256"]} for f in report.files]
    files.append(
        {
            "path": "compression_report.json",
            "size": (out_dir / "compression_report.json").stat().st_size,
            "sha256": sha256_file(out_dir / "compression_report.json"),
        }
    )
    ctx.logger.info("%s: %s in %.1f s", recipe, report.scheme, report.seconds.get("total", 0.0))

    def record() -> None:
        Variant.objects.create(
            base=base,
            recipe=recipe,
            job=job,
            name=unique_variant_name(f"{base.name}-{recipe.name}"),
            scheme=report.scheme,
            local_path=str(out_dir),
            files=sorted(files, key=lambda f: f["path"]),
            size_bytes=sum(f["size"] for f in files),
            compression_report=report.to_dict(),
            owner=job.owner,
            private=job.private or base.private,
        )

    return StageResult(
        outputs={"path": str(out_dir), "scheme": report.scheme, "seconds": report.seconds},
        record=record,
        versions={f"compress:{k}": v for k, v in report.versions.items()},
    )


def unique_variant_name(wanted: str) -> str:
    name, n = wanted, 1
    while Variant.objects.filter(name=name).exists():
        n += 1
        name = f"{wanted}-{n}"
    return name
