"""What a published repository says about its variant, beside the weights as measured: the
model card (README.md with Hub metadata), lm-eval results, benchmark JSON, `.eval_results/`
for the Hub's leaderboards, and SHA256SUMS of every file in the repository."""

import hashlib
import json
import re

import yaml
from django.conf import settings
from django.urls import reverse

from hub.catalog.models import BaseModel, Variant
from hub.results.models import BenchmarkRun, EvalRun
from hub.results.reproduce import task_setups

CARD_FILES = ("README.md", "lm_eval_results.json", "benchmark.json", "SHA256SUMS")


BENCH_COLUMNS = (
    ("TTFT median (ms)", "ttft_ms", "median"),
    ("TPOT median (ms)", "tpot_ms", "median"),
    ("ITL median (ms)", "itl_ms", "median"),
    ("E2E p99 (ms)", "e2el_ms", "p99"),
    ("requests/s", "request_throughput", None),
    ("output tokens/s", "output_throughput", None),
)


def measured_files(variant: Variant) -> list[dict]:
    """The files as compress made them and validate / benchmark measured them: not those that
    publish writes about them."""
    return [f for f in variant.files if f["path"] not in CARD_FILES and not f["path"].startswith(".eval_results/")]


def repo_files(variant: Variant, repo_id: str, endpoint: str) -> dict[str, bytes]:
    """The files a published repository holds about its variant, path -> bytes: the model card,
    evaluation results and benchmark JSON, and SHA256SUMS of these and the measured files."""
    eval_run = EvalRun.objects.filter(variant=variant).order_by("-created_at").first()
    recoveries = list(eval_run.recoveries.select_related("base_run")) if eval_run else []
    base_run = recoveries[0].base_run if recoveries else None
    benches = []
    for run in BenchmarkRun.objects.filter(variant=variant).order_by("profile", "-created_at"):
        if run.profile not in {b["variant"].profile for b in benches}:
            base = (
                BenchmarkRun.objects.filter(base_model=variant.base_id, stage=run.stage_id, profile=run.profile).first()
                if run.stage_id
                else None
            )
            benches.append({"variant": run, "base": base})

    contents: dict[str, str] = {}
    if eval_run:
        contents["lm_eval_results.json"] = json.dumps(
            {
                "model": repo_id,
                "suite": eval_run.suite,
                "suite_version": eval_run.suite_version,
                "engine_version": eval_run.engine_version,
                "settings": eval_run.settings,
                "metrics": eval_run.metrics,
                "results": eval_run.results,
                "base_results": base_run.results if base_run else None,
            },
            indent=1,
            sort_keys=True,
        )
        contents[f".eval_results/{eval_run.suite}.yaml"] = eval_results_yaml(eval_run, endpoint, repo_id)
    if benches:
        contents["benchmark.json"] = json.dumps(
            [
                {
                    "profile": b["variant"].profile,
                    "profile_version": b["variant"].profile_version,
                    "engine_version": b["variant"].engine_version,
                    "hardware": b["variant"].hardware,
                    "settings": b["variant"].settings,
                    "runnable": b["variant"].runnable,
                    "reason": b["variant"].reason,
                    "metrics": b["variant"].metrics,
                    "base_metrics": b["base"].metrics if b["base"] else None,
                }
                for b in benches
            ],
            indent=1,
            sort_keys=True,
        )
    contents["README.md"] = model_card(variant, repo_id, endpoint, eval_run, recoveries, benches)
    written = {path: text.encode() for path, text in contents.items()}
    # `sha256sum -c SHA256SUMS` in a downloaded folder checks all of it: the measured files as
    # they were measured, and what is written here about them, hashed as the bytes that are written
    sums = {f["path"]: f["sha256"] for f in measured_files(variant)}
    sums |= {path: hashlib.sha256(data).hexdigest() for path, data in written.items()}
    written["SHA256SUMS"] = "".join(f"{sha}  {path}\n" for path, sha in sorted(sums.items())).encode()
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
            dataset_id=dataset_id(run, task),
            task_id=task,
            value=round(m["value"], 6),
            date=run.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            source_url=f"{endpoint}/{repo_id}",
            source_name="modelhub validation",
            notes=f"{m['metric']}, suite {run.suite} v{run.suite_version}, engine {run.engine_version}",
        )
        for task, m in sorted(run.metrics.items())
    ]
    return yaml.safe_dump(eval_result_entries_to_yaml(entries), sort_keys=False)


def fmt(value: float | None, digits: int = 4) -> str:
    return "not measured" if value is None else f"{value:.{digits}f}"


def model_card(
    variant: Variant, repo_id: str, endpoint: str, eval_run: EvalRun | None, recoveries: list, benches: list
) -> str:
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    base, recipe, report = variant.base, variant.recipe, variant.compression_report or {}
    base_id = base.hf_repo_id or base.name
    short = repo_id.split("/")[-1]
    scheme = variant.scheme or recipe.name
    tags = [
        "compressed-tensors",
        "modelhub",
        "vllm",
        *[t.lower() for t in scheme.replace("+", " ").replace(":", "of").split()],
    ]
    results = (
        [
            EvalResult(
                task_type="text-generation",
                dataset_type=dataset_id(eval_run, task),
                dataset_name=task,
                metric_type=m["metric"],
                metric_value=round(m["value"], 6),
                metric_name=f"{m['metric']} ({task})",
                source_url=f"{endpoint}/{repo_id}",
                source_name="modelhub validation",
            )
            for task, m in sorted(eval_run.metrics.items())
        ]
        if eval_run
        else None
    )
    data = ModelCardData(
        base_model=base_id,
        base_model_relation="quantized",
        library_name="transformers",
        license=base.license or None,
        pipeline_tag="text-generation",
        tags=list(dict.fromkeys(tags)),
        model_name=short,
        eval_results=results,
    )
    lines = [
        f"# {short}",
        "",
        f"`{scheme}` compression of [{base_id}]({base_link(base)}), made and validated by this hub "
        f"(job {variant.job_id}, {variant.created_at:%Y-%m-%d}).",
        "",
        "## Overview",
        "",
        f"- **Base model:** {base_id} ({base.architecture or 'unknown architecture'}, "
        f"{base.num_parameters or 'unknown number of'} parameters{f', revision `{base.resolved_sha}`' if base.resolved_sha else ''})",
        f"- **Compression:** {scheme} with recipe `{recipe}`{f' ({recipe.description})' if recipe.description else ''}",
        f"- **Size:** {variant.size_bytes or 0:,} bytes"
        + (
            f" ({variant.size_bytes / base.size_bytes:.0%} of the base's {base.size_bytes:,})"
            if variant.size_bytes and base.size_bytes
            else ""
        ),
        # the summary starts with the verdict, named as the gate's label
        f"- **Validation:** {variant.gate_report.get('summary') or variant.get_gate_display()}",
        "",
        "## Accuracy recovery",
        "",
        *recovery_section(eval_run, recoveries),
        "",
        "## Inference performance",
        "",
        *bench_section(benches),
        "",
        "## How it was made",
        "",
        *made_section(variant, report),
        "",
        "## How to run it",
        "",
        *run_section(repo_id, endpoint),
        "",
        "## Evaluation settings",
        "",
        *eval_settings_section(eval_run, repo_id, endpoint),
        "",
        "## Files",
        "",
        "| file | bytes | sha256 |",
        "|---|---:|---|",
        *[f"| `{f['path']}` | {f['size']:,} | `{f['sha256']}` |" for f in measured_files(variant)],
        "",
        "`sha256sum -c SHA256SUMS` in a downloaded folder checks these, and this card and the results beside them.",
        "",
    ]
    card = ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines))
    return str(card)


def base_link(base: BaseModel) -> str:
    """Where a reader of the card finds the base, wherever the card is published: its
    repository on this hub or upstream, or its catalog page for a model imported from a folder.
    Absolute, since a relative link on another hub would name a page of that hub."""
    site = settings.SITE_URL.rstrip("/")
    if base.on_this_hub:
        return f"{site}/{base.hf_repo_id}"
    if base.hf_repo_id:
        return f"{(settings.HF_ENDPOINT or 'https://huggingface.co').rstrip('/')}/{base.hf_repo_id}"
    return site + reverse("model", args=[base.pk])


def recovery_section(run: EvalRun | None, recoveries: list) -> list[str]:
    if run is None:
        return ["Not measured: the job ran no evaluation suite."]
    if not recoveries:
        return [
            f"Not measured against the base (suite {run.suite} v{run.suite_version} ran, but recorded no recovery).",
            "",
            "| task | metric | this model |",
            "|---|---|---:|",
            *[
                f"| {t} | {m['metric']} | {fmt(m['value'])} ± {fmt(m.get('stderr'))} |"
                for t, m in sorted(run.metrics.items())
            ],
        ]
    metrics, base_metrics = run.metrics, recoveries[0].base_run.metrics
    rows = [
        "| task | metric | base | this model | recovery [95% interval] | difference [95% interval] | threshold | verdict |",
        "|---|---|---:|---:|---:|---|---:|---|",
    ]
    for r in recoveries:
        interval = f"[{r.ci_low:+.4f}, {r.ci_high:+.4f}]" if r.ci_low is not None else "not measured"
        verdict = r.get_verdict_display() + (f": {r.verdict_note}" if r.verdict_note else "")
        rows.append(
            f"| {cell(r.task)} | {r.metric} | {fmt(r.base_value)} ± {fmt(base_metrics.get(r.task, {}).get('stderr'))} "
            f"| {fmt(r.variant_value)} ± {fmt(metrics.get(r.task, {}).get('stderr'))} "
            # two decimals: an interval's end just under the threshold must not read as on it
            f"| {r.recovery:.1%} [{r.recovery_low:.2%}, {r.recovery_high:.2%}] "
            f"| {r.diff:+.4f} {interval} | {r.threshold:.0%} | {cell(verdict)} |"
        )
    worst = min(recoveries, key=lambda r: r.recovery)
    return [
        f"Worst-task recovery {worst.recovery:.1%} ({cell(worst.task)}) on suite {run.suite} v{run.suite_version}, "
        "base and this model scored with identical settings; intervals are paired 95% intervals. A task is "
        "validated when the whole interval of its recovery is at or above the threshold, failed when it is all "
        "below, and inconclusive at this sample size in between.",
        "",
        *rows,
    ]


def cell(text: str) -> str:
    """Text from a user's suite in a Markdown table cell: a pipe or a line break would end the cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def fence(lines: list[str], info: str = "") -> list[str]:
    """A code block that no line inside can close: its fence is longer than any run of backticks."""
    longest = max((len(run) for line in lines for run in re.findall(r"`+", line)), default=0)
    ticks = "`" * max(3, longest + 1)
    return [ticks + info, *lines, ticks]


def bench_section(benches: list) -> list[str]:
    if not benches:
        return ["Not measured: the job ran no benchmark."]
    rows = [
        "| model | profile | hardware | " + " | ".join(c[0] for c in BENCH_COLUMNS) + " |",
        "|---|---|---|" + "---:|" * len(BENCH_COLUMNS),
    ]
    for pair in benches:
        for label, run in (("base", pair["base"]), ("this model", pair["variant"])):
            if run is None:
                continue
            hw = run.hardware or {}
            hardware = hw.get("gpu_name") or hw.get("name") or hw.get("cpu") or "unknown"
            if not run.runnable:
                rows.append(
                    f"| {label} | {run.profile} | {hardware} | not runnable: {run.reason} |"
                    + " |" * (len(BENCH_COLUMNS) - 1)
                )
                continue
            values = []
            for _, key, stat in BENCH_COLUMNS:
                value = (run.metrics or {}).get(key)
                value = value.get(stat) if isinstance(value, dict) and stat else value
                values.append(fmt(value, 2) if isinstance(value, (int, float)) else "not measured")
            rows.append(f"| {label} | {run.profile} v{run.profile_version} | {hardware} | " + " | ".join(values) + " |")
    return [
        "Measured by this hub's engine, base and this model on the same hardware and workload profile; "
        "raw figures in `benchmark.json`.",
        "",
        *rows,
    ]


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
        "This hub's engine:",
        "",
        "```sh",
        env,
        f"hf download {repo_id} --local-dir {repo_id.split('/')[-1]}",
        f"(cd {repo_id.split('/')[-1]} && sha256sum -c SHA256SUMS)",
        f"python -m engine generate {repo_id.split('/')[-1]} --prompt 'Once upon a time'",
        "```",
        "",
        "vLLM:",
        "",
        "```sh",
        env,
        f"vllm serve {repo_id}",
        "```",
        "",
        "transformers (with compressed-tensors installed):",
        "",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "",
        f"model = AutoModelForCausalLM.from_pretrained({repo_id!r})",
        f"tokenizer = AutoTokenizer.from_pretrained({repo_id!r})",
        "```",
    ]


def eval_settings_section(run: EvalRun | None, repo_id: str, endpoint: str) -> list[str]:
    if run is None:
        return ["Not measured."]
    setups = task_setups(run, repo_id).values()
    rows = ["| task | suite | few-shot | limit (documents) | chat template |", "|---|---|---:|---:|---|"]
    for s in setups:
        if s.recorded:
            limit = "all" if s.limit is None else f"first {s.limit}"
            rows.append(
                f"| {cell(s.task)} | {cell(s.suite)} | {s.num_fewshot} | {limit} | {'on' if s.chat_template else 'off'} |"
            )
        else:
            rows.append(f"| {cell(s.task)} | {cell(s.suite)} | not recorded | not recorded | not recorded |")
    commands = []
    for s in setups:
        if s.recorded:
            commands += ["", f"# {' '.join(s.task.split())}" + (f": {s.data_note}" if s.data_note else ""), s.command]
    lm_eval = [
        "Each number again with lm-eval's own `hf` backend (transformers, with compressed-tensors installed) "
        "instead of this hub's engine:",
        "",
        *fence([f"export HF_ENDPOINT={endpoint} HF_HUB_DISABLE_XET=1", *commands], "sh"),
        "",
    ]
    return [
        f"Suite `{run.suite}` version {run.suite_version}, engine {run.engine_version}, settings key `{run.settings_key}`; "
        "lm-eval's full results are in `lm_eval_results.json`.",
        "",
        *rows,
        "",
        *(lm_eval if commands else []),
        "With this hub's engine, as measured here:",
        "",
        "```sh",
        f"python -m evals run MODEL_DIR --suite {run.suite} --out results.json",
        "```",
        "",
        "Exact settings:",
        "",
        "```json",
        json.dumps(run.settings, indent=1, sort_keys=True),
        "```",
    ]
