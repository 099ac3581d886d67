"""publish: write a variant's repository (the weights exactly as measured, config, tokenizer,
recipe, evaluation results, benchmark JSON and a model card) and upload it with huggingface_hub
to this hub, then to each external target the job names. This hub is reached through its own
HTTP API, the same code path as any other Hub endpoint."""

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import yaml
from django.conf import settings
from django.contrib.auth import get_user_model

from hub.api.models import ApiToken
from hub.catalog.checkpoints import CheckpointError, sha256_file
from hub.catalog.models import Publication, Variant
from hub.catalog.store import check_repo_name, verify_checkpoint
from hub.hfapi.converters import RESERVED
from hub.hfapi.models import Repo
from hub.jobs.targets import Target, TargetRefused, resolve_target, token_for
from hub.results.models import BenchmarkRun, EvalRun
from workers.runner import StageError, StageResult

CARD_FILES = ("README.md", "lm_eval_results.json", "benchmark.json", "SHA256SUMS")
BENCH_COLUMNS = (
    ("TTFT median (ms)", "ttft_ms", "median"), ("TPOT median (ms)", "tpot_ms", "median"),
    ("ITL median (ms)", "itl_ms", "median"), ("E2E p99 (ms)", "e2el_ms", "p99"),
    ("requests/s", "request_throughput", None), ("output tokens/s", "output_throughput", None),
)


def publish(stage, ctx) -> StageResult:
    job, recipe = stage.job, stage.recipe
    variant = (
        Variant.objects.filter(job=job, recipe=recipe).select_related("base", "recipe", "job__owner")
        .order_by("-created_at").first()
    )
    if variant is None or not variant.local_path:
        raise StageError(f"job {job.pk} has no {recipe} variant to publish (did compress run?)")
    folder = Path(variant.local_path)
    measured = measured_files(variant)
    ctx.logger.info("verifying %s against the sha256 recorded when it was made", folder)
    try:
        verify_checkpoint(folder, measured, lambda done, message: ctx.progress(0.1 * done, message))
    except CheckpointError as exc:
        raise StageError(f"{variant.name}: {exc}; refusing to publish files that differ from what was measured") from None
    targets = external_targets(job.publish_targets, job.owner)
    repo_id = local_repo_id(variant)
    endpoint = settings.PUBLISH_LOCAL_ENDPOINT.rstrip("/")
    card_files = write_repo_files(variant, folder, repo_id, endpoint)
    files = sorted({f["path"]: f for f in [*measured, *card_files]}.values(), key=lambda f: f["path"])

    publications = []
    message = f"{variant.name}: {variant.scheme or recipe.name} from {variant.base.name} (job {job.pk})"
    user = publisher()
    token, plaintext = ApiToken.issue(user, f"publish stage {stage.pk}", ApiToken.Scope.WRITE)
    try:
        ctx.progress(0.2, f"uploading to this hub as {repo_id}")
        with hub_client_settings():
            sha = upload(endpoint, plaintext, repo_id, folder, files, variant.private, message)
    finally:
        token.revoke()
    publications.append(Publication(variant=variant, endpoint=Publication.LOCAL, repo_id=repo_id, commit_sha=sha,
                                    url=f"{settings.SITE_URL.rstrip('/')}/{repo_id}"))
    ctx.logger.info("published %s@%s on this hub", repo_id, sha)
    if targets and variant.gate == Variant.Gate.FAILED:
        # this hub keeps and shows every variant; only validated ones go out to other hubs
        ctx.logger.info("not publishing to %s: %s failed its validation gate", ", ".join(t.repo_id for t in targets), variant.name)
        targets = []
    for i, target in enumerate(targets):
        if ctx.cancelled():
            raise StageError("cancelled")
        ctx.progress(0.2 + 0.8 * (i + 1) / (len(targets) + 1), f"uploading to {target.endpoint} as {target.repo_id}")
        sha = upload(target.endpoint, token_for(target, job.owner), target.repo_id, folder, files, variant.private, message)
        publications.append(Publication(variant=variant, endpoint=target.endpoint, repo_id=target.repo_id, commit_sha=sha,
                                        url=f"{target.endpoint}/{target.repo_id}"))
        ctx.logger.info("published %s@%s on %s", target.repo_id, sha, target.endpoint)

    def record() -> None:
        Variant.objects.filter(pk=variant.pk).update(files=files)
        Publication.objects.bulk_create(publications)

    import huggingface_hub

    return StageResult(
        outputs={"publications": [{"endpoint": p.endpoint, "repo_id": p.repo_id, "commit": p.commit_sha, "url": p.url}
                                  for p in publications]},
        record=record,
        versions={"publish:huggingface_hub": huggingface_hub.__version__},
    )


def external_targets(lines: list[str], owner) -> list[Target]:
    """The job's targets, checked again as at submission (the operator's settings may have
    changed since); refuses before anything is uploaded when one is no longer allowed or has no
    token."""
    try:
        targets = [resolve_target(line, owner) for line in lines]
    except TargetRefused as exc:
        raise StageError(f"publish target {exc}") from None
    home = [t for t in targets if t.hubs_token]
    if home and not settings.PUBLISH_HF_TOKEN:
        raise StageError(
            f"the job asks to publish to {', '.join(f'{t.endpoint} {t.repo_id}' for t in home)}, but no token is configured: "
            "set HUB_PUBLISH_HF_TOKEN (a write token for that hub)"
        )
    return targets


def local_repo_id(variant: Variant) -> str:
    """`{owner}/{variant}` on this hub (or PUBLISH_NAMESPACE for jobs without an owner); a name
    another variant already took gets a numbered suffix."""
    owner = variant.job.owner if variant.job else None
    namespace = owner.username if owner and owner.username.lower() not in RESERVED else settings.PUBLISH_NAMESPACE
    try:
        check_repo_name(f"{namespace}/x")
    except CheckpointError:
        namespace = settings.PUBLISH_NAMESPACE
    short = variant.name.split("/")[-1]
    name, n = short, 1
    while Repo.objects.filter(namespace=namespace, name=name).exists() and not Publication.objects.filter(
        variant=variant, endpoint=Publication.LOCAL, repo_id=f"{namespace}/{name}"
    ).exists():
        n += 1
        name = f"{short}-{n}"
    return f"{namespace}/{name}"


def publisher():
    """The system user that uploads into this hub; staff, so it may write in any namespace,
    and without a password, so nobody signs in as it."""
    user, created = get_user_model().objects.get_or_create(
        username=settings.PUBLISH_USER, defaults={"is_staff": True, "is_active": True}
    )
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    elif not (user.is_staff and user.is_active):
        raise StageError(f"the publishing user {user.username!r} must be active staff (HUB_PUBLISH_USER)")
    return user


@contextlib.contextmanager
def hub_client_settings() -> Iterator[None]:
    """This hub speaks LFS (no Xet), and HF_HUB_OFFLINE, which keeps workers off huggingface.co,
    must not keep them off this hub itself."""
    from huggingface_hub import constants

    saved = constants.HF_HUB_DISABLE_XET, constants.HF_HUB_OFFLINE
    constants.HF_HUB_DISABLE_XET, constants.HF_HUB_OFFLINE = True, False
    try:
        yield
    finally:
        constants.HF_HUB_DISABLE_XET, constants.HF_HUB_OFFLINE = saved


def upload(endpoint: str, token: str, repo_id: str, folder: Path, files: list[dict], private: bool, message: str) -> str:
    """Upload `files` of `folder` as one commit; returns its sha once every file in it is
    checked to be the one recorded here."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled
    from huggingface_hub.hf_api import RepoFile

    from hub.hfapi.storage import git_blob_id

    api = HfApi(endpoint=endpoint, token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.upload_folder(
            folder_path=folder, repo_id=repo_id, commit_message=message[:200],
            allow_patterns=[f["path"] for f in files],
        )
        remote = {f.path: f for f in api.list_repo_tree(repo_id, revision=info.oid, recursive=True) if isinstance(f, RepoFile)}
    except OfflineModeIsEnabled:
        raise StageError(f"cannot publish to {endpoint}: HF_HUB_OFFLINE is set on this worker") from None
    except (HfHubHTTPError, OSError) as exc:
        raise StageError(f"publishing {repo_id} to {endpoint} failed: {exc}") from None
    for entry in files:
        got = remote.get(entry["path"])
        if got is None:
            raise StageError(f"{endpoint}/{repo_id}@{info.oid}: {entry['path']} is missing after the upload")
        if got.lfs is not None:
            same = got.lfs.sha256 == entry["sha256"]
        else:
            same = got.blob_id == git_blob_id((folder / entry["path"]).read_bytes())
        if not same or got.size != entry["size"]:
            raise StageError(f"{endpoint}/{repo_id}@{info.oid}: {entry['path']} differs from the file recorded here")
    return info.oid


# -- the repository's files beside the weights ------------------------------------------------


def measured_files(variant: Variant) -> list[dict]:
    """The files as compress made them and validate / benchmark measured them: not those that
    publish writes about them."""
    return [f for f in variant.files if f["path"] not in CARD_FILES and not f["path"].startswith(".eval_results/")]


def write_repo_files(variant: Variant, folder: Path, repo_id: str, endpoint: str) -> list[dict]:
    """Write the model card, evaluation results and benchmark JSON into the variant's folder
    (each file whole, by rename); returns their {path, size, sha256}."""
    eval_run = EvalRun.objects.filter(variant=variant).order_by("-created_at").first()
    recoveries = list(eval_run.recoveries.select_related("base_run")) if eval_run else []
    base_run = recoveries[0].base_run if recoveries else None
    benches = []
    for run in BenchmarkRun.objects.filter(variant=variant).order_by("profile", "-created_at"):
        if run.profile not in {b["variant"].profile for b in benches}:
            base = BenchmarkRun.objects.filter(base_model=variant.base_id, stage=run.stage_id, profile=run.profile).first() if run.stage_id else None
            benches.append({"variant": run, "base": base})

    contents: dict[str, str] = {}
    if eval_run:
        contents["lm_eval_results.json"] = json.dumps(
            {"model": repo_id, "suite": eval_run.suite, "suite_version": eval_run.suite_version,
             "engine_version": eval_run.engine_version, "settings": eval_run.settings, "metrics": eval_run.metrics,
             "results": eval_run.results, "base_results": base_run.results if base_run else None},
            indent=1, sort_keys=True,
        )
        contents[f".eval_results/{eval_run.suite}.yaml"] = eval_results_yaml(eval_run, endpoint, repo_id)
    if benches:
        contents["benchmark.json"] = json.dumps(
            [{"profile": b["variant"].profile, "profile_version": b["variant"].profile_version,
              "engine_version": b["variant"].engine_version, "hardware": b["variant"].hardware,
              "settings": b["variant"].settings, "runnable": b["variant"].runnable, "reason": b["variant"].reason,
              "metrics": b["variant"].metrics, "base_metrics": b["base"].metrics if b["base"] else None}
             for b in benches],
            indent=1, sort_keys=True,
        )
    contents["README.md"] = model_card(variant, repo_id, endpoint, eval_run, recoveries, benches)
    # `sha256sum -c SHA256SUMS` in a downloaded folder shows it holds what was measured
    contents["SHA256SUMS"] = "".join(f"{f['sha256']}  {f['path']}\n" for f in measured_files(variant))
    written = []
    for path, text in contents.items():
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, target)
        written.append({"path": path, "size": target.stat().st_size, "sha256": sha256_file(target)})
    return written


def dataset_id(run: EvalRun, task: str) -> str:
    """The Hub dataset a task reads, from lm-eval's own task config when it names one."""
    for leaf in [task, *run.metrics.get(task, {}).get("tasks", [])]:
        config = (run.results.get("configs") or {}).get(leaf) or {}
        if isinstance(config.get("dataset_path"), str) and "/" in config["dataset_path"]:
            return config["dataset_path"]
    return task


def eval_results_yaml(run: EvalRun, endpoint: str, repo_id: str) -> str:
    from huggingface_hub import EvalResultEntry, eval_result_entries_to_yaml

    entries = [
        EvalResultEntry(
            dataset_id=dataset_id(run, task), task_id=task, value=round(m["value"], 6),
            date=run.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"), source_url=f"{endpoint}/{repo_id}",
            source_name="modelhub validation", notes=f"{m['metric']}, suite {run.suite} v{run.suite_version}, engine {run.engine_version}",
        )
        for task, m in sorted(run.metrics.items())
    ]
    return yaml.safe_dump(eval_result_entries_to_yaml(entries), sort_keys=False)


def fmt(value: float | None, digits: int = 4) -> str:
    return "not measured" if value is None else f"{value:.{digits}f}"


def model_card(variant: Variant, repo_id: str, endpoint: str, eval_run: EvalRun | None, recoveries: list, benches: list) -> str:
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    base, recipe, report = variant.base, variant.recipe, variant.compression_report or {}
    base_id = base.hf_repo_id or base.name
    short = repo_id.split("/")[-1]
    scheme = variant.scheme or recipe.name
    tags = ["compressed-tensors", "modelhub", "vllm", *[t.lower() for t in scheme.replace("+", " ").replace(":", "of").split()]]
    results = [
        EvalResult(
            task_type="text-generation", dataset_type=dataset_id(eval_run, task), dataset_name=task,
            metric_type=m["metric"], metric_value=round(m["value"], 6), metric_name=f"{m['metric']} ({task})",
            source_url=f"{endpoint}/{repo_id}", source_name="modelhub validation",
        )
        for task, m in sorted(eval_run.metrics.items())
    ] if eval_run else None
    data = ModelCardData(
        base_model=base_id, base_model_relation="quantized", library_name="transformers",
        license=base.license or None, pipeline_tag="text-generation", tags=list(dict.fromkeys(tags)),
        model_name=short, eval_results=results,
    )
    lines = [
        f"# {short}", "",
        f"`{scheme}` compression of [{base_id}]({base_link(base_id, base.hf_repo_id)}), made and validated by this hub "
        f"(job {variant.job_id}, {variant.created_at:%Y-%m-%d}).", "",
        "## Overview", "",
        f"- **Base model:** {base_id} ({base.architecture or 'unknown architecture'}, "
        f"{base.num_parameters or 'unknown number of'} parameters{f', revision `{base.resolved_sha}`' if base.resolved_sha else ''})",
        f"- **Compression:** {scheme} with recipe `{recipe}`{f' ({recipe.description})' if recipe.description else ''}",
        f"- **Size:** {variant.size_bytes or 0:,} bytes"
        + (f" ({variant.size_bytes / base.size_bytes:.0%} of the base's {base.size_bytes:,})" if variant.size_bytes and base.size_bytes else ""),
        f"- **Validation gate:** {variant.gate}" + (f": {variant.gate_report.get('summary')}" if variant.gate_report.get("summary") else ""),
        "",
        "## Accuracy recovery", "",
        *recovery_section(eval_run, recoveries), "",
        "## Inference performance", "",
        *bench_section(benches), "",
        "## How it was made", "",
        *made_section(variant, report), "",
        "## How to run it", "",
        *run_section(repo_id, endpoint), "",
        "## Evaluation settings", "",
        *eval_settings_section(eval_run), "",
        "## Files", "",
        "| file | bytes | sha256 |", "|---|---:|---|",
        *[f"| `{f['path']}` | {f['size']:,} | `{f['sha256']}` |" for f in measured_files(variant)],
        "", "`sha256sum -c SHA256SUMS` in a downloaded folder checks these.",
        "",
    ]
    card = ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines))
    return str(card)


def base_link(base_id: str, hf_repo_id: str) -> str:
    return f"https://huggingface.co/{base_id}" if hf_repo_id else f"/{base_id}"


def recovery_section(run: EvalRun | None, recoveries: list) -> list[str]:
    if run is None:
        return ["Not measured: the job ran no evaluation suite."]
    if not recoveries:
        return [f"Not measured against the base (suite {run.suite} v{run.suite_version} ran, but recorded no recovery).", "",
                "| task | metric | this model |", "|---|---|---:|",
                *[f"| {t} | {m['metric']} | {fmt(m['value'])} ± {fmt(m.get('stderr'))} |" for t, m in sorted(run.metrics.items())]]
    metrics, base_metrics = run.metrics, recoveries[0].base_run.metrics
    rows = [
        "| task | metric | base | this model | recovery | difference [95% interval] | threshold | verdict |",
        "|---|---|---:|---:|---:|---|---:|---|",
    ]
    for r in recoveries:
        interval = f"[{r.ci_low:+.4f}, {r.ci_high:+.4f}]" if r.ci_low is not None else "not measured"
        rows.append(
            f"| {r.task} | {r.metric} | {fmt(r.base_value)} ± {fmt(base_metrics.get(r.task, {}).get('stderr'))} "
            f"| {fmt(r.variant_value)} ± {fmt(metrics.get(r.task, {}).get('stderr'))} | {r.recovery:.1%} "
            f"| {r.diff:+.4f} {interval} | {r.threshold:.0%} | {'pass' if r.passed else 'FAIL'} |"
        )
    worst = min(recoveries, key=lambda r: r.recovery)
    return [f"Worst-task recovery {worst.recovery:.1%} ({worst.task}) on suite {run.suite} v{run.suite_version}, "
            "base and this model scored with identical settings; intervals are paired 95% intervals of the difference.",
            "", *rows]


def bench_section(benches: list) -> list[str]:
    if not benches:
        return ["Not measured: the job ran no benchmark."]
    rows = ["| model | profile | hardware | " + " | ".join(c[0] for c in BENCH_COLUMNS) + " |",
            "|---|---|---|" + "---:|" * len(BENCH_COLUMNS)]
    for pair in benches:
        for label, run in (("base", pair["base"]), ("this model", pair["variant"])):
            if run is None:
                continue
            hw = run.hardware or {}
            hardware = hw.get("gpu_name") or hw.get("name") or hw.get("cpu") or "unknown"
            if not run.runnable:
                rows.append(f"| {label} | {run.profile} | {hardware} | not runnable: {run.reason} |" + " |" * (len(BENCH_COLUMNS) - 1))
                continue
            values = []
            for _, key, stat in BENCH_COLUMNS:
                value = (run.metrics or {}).get(key)
                value = value.get(stat) if isinstance(value, dict) and stat else value
                values.append(fmt(value, 2) if isinstance(value, (int, float)) else "not measured")
            rows.append(f"| {label} | {run.profile} v{run.profile_version} | {hardware} | " + " | ".join(values) + " |")
    return ["Measured by this hub's engine, base and this model on the same hardware and workload profile; "
            "raw figures in `benchmark.json`.", "", *rows]


def made_section(variant: Variant, report: dict) -> list[str]:
    versions = variant.job.versions if variant.job else {}
    lines = [
        f"Recipe `{variant.recipe}` (the exact recipe is `recipe.yaml` in this repository, in llm-compressor's format).",
        f"Algorithms: {', '.join(report.get('algorithms') or []) or 'not recorded'}; "
        f"device: {report.get('device') or 'not recorded'}.",
    ]
    if report.get("calibration"):
        lines.append(f"Calibration: `{json.dumps(report['calibration'], sort_keys=True)}`.")
    if report.get("notes"):
        lines += ["", *[f"- {n}" for n in report["notes"]]]
    if versions:
        lines += ["", "Library versions:", "", "```json", json.dumps(versions, indent=1, sort_keys=True), "```"]
    return lines


def run_section(repo_id: str, endpoint: str) -> list[str]:
    env = f"export HF_ENDPOINT={endpoint} HF_HUB_DISABLE_XET=1"
    return [
        "This hub's engine:", "", "```sh", env,
        f"hf download {repo_id} --local-dir {repo_id.split('/')[-1]}",
        f"(cd {repo_id.split('/')[-1]} && sha256sum -c SHA256SUMS)",
        f"python -m engine generate {repo_id.split('/')[-1]} --prompt 'Once upon a time'", "```", "",
        "vLLM:", "", "```sh", env, f"vllm serve {repo_id}", "```", "",
        "transformers (with compressed-tensors installed):", "", "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
        f"model = AutoModelForCausalLM.from_pretrained({repo_id!r})",
        f"tokenizer = AutoTokenizer.from_pretrained({repo_id!r})", "```",
    ]


def eval_settings_section(run: EvalRun | None) -> list[str]:
    if run is None:
        return ["Not measured."]
    return [
        f"Suite `{run.suite}` version {run.suite_version}, engine {run.engine_version}, settings key `{run.settings_key}`; "
        "lm-eval's full results are in `lm_eval_results.json`. To reproduce:", "",
        "```sh", f"python -m evals run MODEL_DIR --suite {run.suite} --out results.json", "```", "",
        "Exact settings:", "", "```json", json.dumps(run.settings, indent=1, sort_keys=True), "```",
    ]
