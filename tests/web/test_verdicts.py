"""Three verdicts a reader cannot misread: validated (every task's 95% interval of the recovery
clears the threshold), failed (one lies below it) and inconclusive at this sample size (in
between, with how many documents would settle it), the same on the variant page, the catalog's
badges and its "validated only" filter, the model card and the API. Beside them, per task, the
settings and the lm-eval command that measure the same number with lm-eval's own `hf` backend."""

import re
import shlex
from dataclasses import dataclass

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client

from evals import EvalResult, compare, gate_report
from hub.catalog import cards
from hub.catalog.models import BaseModel, Variant
from hub.hfapi.card import render, split
from hub.jobs.models import Recipe
from hub.results.models import EvalRun, Recovery
from hub.results.reproduce import lm_eval_command

THRESHOLD = 0.96
AVAILABLE = {"arc_easy": 2376, "hellaswag": 10042}  # documents each task has, as lm-eval counts them
# what evals.prepare records (the quick suite on a CPU, data from a local folder for hellaswag)
SETTINGS = {
    "suite": "quick",
    "suite_version": "1",
    "tasks": [
        {"name": "arc_easy", "num_fewshot": 0, "limit": 300, "metric": "acc_norm", "filter": "none", "file": None,
         "data": "hf:allenai/ai2_arc/ARC-Easy"},
        {"name": "hellaswag", "num_fewshot": 10, "limit": 100, "metric": "acc_norm", "filter": "none", "file": None,
         "data": "local:dea4753"},
    ],
    "fewshot_seed": 1234,
    "dtype": "float32",
    "add_bos_token": None,
    "chat_template": None,
    "max_model_len": None,
}  # fmt: skip


def flips(n: int, correct: int, lost: int = 0, gained: int = 0) -> tuple[list[int], list[int]]:
    """Base scores with `correct` of `n` right; the variant loses `lost` of them and gains `gained`."""
    base = [1] * correct + [0] * (n - correct)
    variant = base[:]
    variant[:lost] = [0] * lost
    variant[correct : correct + gained] = [1] * gained
    return base, variant


def evaluation(scores: dict[str, list[int]]) -> EvalResult:
    """A run whose per-sample log holds `scores` per task, as lm-eval logs them."""
    return EvalResult(
        model="m",
        suite="quick",
        suite_version="1",
        engine_version="e",
        settings=SETTINGS,
        settings_key="k",
        metrics={
            t: {
                "metric": "acc_norm,none",
                "value": sum(s) / len(s),
                "n": len(s),
                "higher_is_better": True,
                "tasks": [t],
            }
            for t, s in scores.items()
        },
        results={"n-samples": {t: {"original": AVAILABLE[t], "effective": len(s)} for t, s in scores.items()}},
        samples=[
            {"task": t, "doc_id": i, "filter": "none", "prompt_hash": f"{t}{i}", "acc_norm": x}
            for t, s in scores.items()
            for i, x in enumerate(s)
        ],
    )


@dataclass
class Judged:
    base: BaseModel
    clear: Variant  # both tasks hold: validated
    drop: Variant  # ARC-Easy loses 9 points: failed
    few: Variant  # HellaSwag 30.0 -> 28.0 on 100 documents: inconclusive
    reports: dict[str, dict]


@pytest.fixture
def judged(db) -> Judged:
    arc, hs = flips(300, 180, 1, 1), flips(100, 30)
    cases = {
        "clear": ("w8a16", arc, hs),
        "drop": ("w4a16-gptq", flips(300, 180, 30, 3), hs),
        "few": ("w8a8-int8", arc, flips(100, 30, 4, 2)),
    }
    base = BaseModel.objects.create(name="org/tiny", architecture="LlamaForCausalLM", status=BaseModel.Status.READY)
    base_run = EvalRun.objects.create(
        base_model=base, suite="quick", suite_version="1", engine_version="e", settings=SETTINGS, settings_key="k"
    )
    variants, reports = {}, {}
    for name, (preset, (arc_b, arc_v), (hs_b, hs_v)) in cases.items():
        before = evaluation({"arc_easy": arc_b, "hellaswag": hs_b})
        after = evaluation({"arc_easy": arc_v, "hellaswag": hs_v})
        base_run.metrics = before.metrics
        base_run.save()
        recoveries = compare(before, after, THRESHOLD)
        report = reports[name] = gate_report(recoveries, THRESHOLD)
        # as the validate stage records its judgement
        variant = Variant.objects.create(
            base=base,
            recipe=Recipe.for_preset(preset),
            name=f"org/tiny-{name}",
            scheme=preset.upper(),
            gate=Variant.Gate(report["verdict"]),
            gate_report=report,
        )
        run = EvalRun.objects.create(
            variant=variant,
            suite="quick",
            suite_version="1",
            engine_version="e",
            settings=SETTINGS,
            settings_key="k",
            metrics=after.metrics,
        )
        Recovery.record(run, base_run, recoveries)
        variants[name] = variant
    return Judged(base=base, reports=reports, **variants)


def test_it_judges_a_clear_pass_a_clear_fail_and_too_few_documents(judged):
    assert {name: r["verdict"] for name, r in judged.reports.items()} == {
        "clear": "validated",
        "drop": "failed",
        "few": "inconclusive",
    }
    hs = judged.reports["few"]["tasks"]["hellaswag"]
    assert hs["recovery"] == pytest.approx(28 / 30) and hs["recovery_low"] < THRESHOLD <= hs["recovery_high"]
    assert hs["documents_needed"] > 100 and hs["note"] == (
        f"about {hs['documents_needed']:,} documents would settle it (100 scored of the task's 10,042)"
    )
    assert judged.reports["few"]["summary"].startswith("inconclusive at this sample size: ")
    assert judged.reports["drop"]["summary"] == "failed: the 95% interval of the recovery lies below 96% on arc_easy"
    rows = {r.task: r for r in Recovery.objects.filter(variant_run__variant=judged.few)}
    assert (rows["hellaswag"].verdict, rows["arc_easy"].verdict) == ("inconclusive", "validated")
    assert rows["hellaswag"].documents_needed == hs["documents_needed"] and rows["arc_easy"].documents_needed is None


def test_it_says_the_same_three_states_on_the_variant_page(client, judged):
    for variant, label in ((judged.clear, "validated"), (judged.drop, "failed"), (judged.few, "inconclusive")):
        html = client.get(f"/models/variants/{variant.pk}/").content.decode()
        badge = re.search(r'<span class="gate gate-(\w+)">([^<]*)</span></h1>', html).groups()
        assert badge == (label, variant.get_gate_display())
        assert f'<strong class="gate gate-{label}">{variant.get_gate_display()}</strong>' in html
    few = client.get(f"/models/variants/{judged.few.pk}/").content.decode()
    needed = judged.reports["few"]["tasks"]["hellaswag"]["documents_needed"]
    assert (
        '<td class="verdict gate-inconclusive">inconclusive at this sample size: '
        f"about {needed:,} documents would settle it (100 scored of the task&#x27;s 10,042)</td>"
    ) in few
    assert '<td class="verdict gate-validated">validated</td>' in few  # ARC-Easy
    assert ">validated</span></h1>" not in few
    # how each number was measured, and the command that measures it with lm-eval's hf backend
    row = re.search(r'<tr data-task="hellaswag"><td>hellaswag</td><td>quick v1</td>(.*?)</tr>', few, re.S).group(1)
    cells = re.findall(r"<td>(.*?)</td>", row.split("<td><pre")[0])
    assert cells == ["10", "first 100", "off"]
    assert (
        '<pre class="command">lm_eval --model hf --model_args pretrained=tiny-few,dtype=float32 --tasks hellaswag '
        "--num_fewshot 10 --limit 100 --seed 0,1234,1234,1234 --log_samples --output_path out</pre>"
    ) in row
    assert "scored on a local copy of the task&#x27;s data" in row


def test_it_badges_the_catalog_and_keeps_inconclusive_out_of_validated_only(client, judged):
    html = client.get("/").content.decode()
    badges = dict(re.findall(r'data-name="(org/tiny-\w+)">.*?<span class="gate gate-\w+">([^<]*)</span>', html))
    assert badges == {
        "org/tiny-clear": "validated",
        "org/tiny-drop": "failed",
        "org/tiny-few": "inconclusive at this sample size",
    }
    shown = re.findall(r'li class="variant" data-name="([^"]+)"', client.get("/?validated=on").content.decode())
    assert shown == ["org/tiny-clear"]


def test_it_writes_the_verdicts_and_the_lm_eval_commands_into_the_card(judged):
    card = cards.repo_files(judged.few, "org/tiny-few", "http://hub.test")["README.md"].decode()
    summary = judged.reports["few"]["summary"]
    assert f"- **Validation:** {summary}" in card and summary.startswith("inconclusive at this sample size")
    hs = next(line for line in card.splitlines() if line.startswith("| hellaswag | acc_norm,none |"))
    assert "| 93.3% [" in hs and hs.endswith(f"| 96% | inconclusive at this sample size: {hs_note(judged)} |")
    assert "| arc_easy | quick v1 | 0 | first 300 | off |" in card
    assert "| hellaswag | quick v1 | 10 | first 100 | off |" in card
    assert "export HF_ENDPOINT=http://hub.test HF_HUB_DISABLE_XET=1" in card
    assert (
        "lm_eval --model hf --model_args pretrained=org/tiny-few,dtype=float32 --tasks arc_easy --num_fewshot 0 "
        "--limit 300 --seed 0,1234,1234,1234 --log_samples --output_path out"
    ) in card
    for variant, verdict in ((judged.clear, "validated"), (judged.drop, "failed")):
        text = cards.repo_files(variant, variant.name, "http://hub.test")["README.md"].decode()
        assert f"- **Validation:** {verdict}: " in text and "| inconclusive at this sample size" not in text


def test_it_keeps_a_hostile_task_name_inside_its_cell_and_its_code_block(judged):
    evil = "x | y\n```\n<script>alert(1)</script>"
    run = EvalRun.objects.get(variant=judged.few)
    run.metrics[evil] = run.metrics["hellaswag"]
    run.settings = {**SETTINGS, "tasks": [*SETTINGS["tasks"], {**SETTINGS["tasks"][1], "name": evil}]}
    run.save()
    card = cards.repo_files(judged.few, "org/tiny-few", "http://hub.test")["README.md"].decode()
    assert "| x \\| y ``` <script>alert(1)</script> | quick v1 | 10 | first 100 | off |" in card
    html = render(split(card)[1], "/files/")
    assert "<script>" not in html and "'x | y\n```\n&lt;script&gt;alert(1)&lt;/script&gt;'" in html  # still in the code
    page = Client().get(f"/models/variants/{judged.few.pk}/").content.decode()
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def hs_note(judged: Judged) -> str:
    return judged.reports["few"]["tasks"]["hellaswag"]["note"]


def test_it_reports_the_verdict_in_the_api(client, judged):
    variants = {v["name"]: v["gate"] for v in client.get("/api/v1/variants").json()["items"]}
    assert variants == {"org/tiny-clear": "validated", "org/tiny-drop": "failed", "org/tiny-few": "inconclusive"}
    assert [v["name"] for v in client.get("/api/v1/variants?validated=true").json()["items"]] == ["org/tiny-clear"]
    (run,) = client.get(f"/api/v1/results/evals?variant={judged.few.pk}").json()["items"]
    hs = next(r for r in run["recoveries"] if r["task"] == "hellaswag")
    assert (hs["verdict"], hs["documents_needed"], hs["verdict_note"]) == (
        "inconclusive",
        judged.reports["few"]["tasks"]["hellaswag"]["documents_needed"],
        hs_note(judged),
    )
    assert hs["recovery_low"] < THRESHOLD <= hs["recovery_high"] and "passed" not in hs


def test_it_builds_commands_that_lm_evals_own_parser_reads_as_the_run_was_set_up():
    from lm_eval._cli.harness import HarnessCLI

    settings = {**SETTINGS, "chat_template": "ab12", "add_bos_token": True, "max_model_len": 2048, "fewshot_seed": 7}
    hostile = {**SETTINGS["tasks"][1], "name": "hs; rm -rf ~ `x`"}
    command = lm_eval_command(settings, hostile, "org/tiny few")
    args = HarnessCLI()._parser.parse_args(["run", *shlex.split(command)[1:]])
    assert (args.model, args.tasks, args.num_fewshot, args.limit, args.seed) == (
        "hf",
        ["hs; rm -rf ~ `x`"],  # one word, run by nobody
        10,
        100,
        [0, 1234, 1234, 7],
    )
    assert args.model_args == {
        "pretrained": "org/tiny few",
        "dtype": "float32",
        "add_bos_token": True,
        "max_length": 2048,
    }
    assert args.apply_chat_template is True and args.fewshot_as_multiturn is True and args.log_samples


@pytest.mark.django_db(transaction=True)
def test_it_judges_existing_rows_again_when_migrating():
    """A variant the old rule passed, with HellaSwag at 93.3% against 99% on an interval wide
    enough to reach 99%, is inconclusive after the migration; a clear pass stays validated."""
    old = [("catalog", "0003_base_model_on_this_hub"), ("results", "0003_benchmarkrun_records_sha256")]
    executor = MigrationExecutor(connection)
    executor.migrate(old)
    apps = executor.loader.project_state(old).apps
    recipe = apps.get_model("jobs", "Recipe").objects.create(name="w8a8-int8", preset=True)
    base = apps.get_model("catalog", "BaseModel").objects.create(name="org/old")
    metrics = {t: {"metric": "acc_norm,none", "value": 0.3, "n": 100, "higher_is_better": True, "tasks": [t]} for t in ("arc_easy", "hellaswag")}  # fmt: skip
    EvalRun_ = apps.get_model("results", "EvalRun")
    base_run = EvalRun_.objects.create(base_model=base, suite="quick", suite_version="1", engine_version="e", metrics=metrics)  # fmt: skip
    ids = {}
    for name, hs_ci in (("noisy", (-0.058, 0.018)), ("sure", (-0.001, 0.0005))):
        variant = apps.get_model("catalog", "Variant").objects.create(
            base=base, recipe=recipe, name=f"org/old-{name}", gate="passed", gate_report={"passed": True, "summary": "passed: ..."}
        )  # fmt: skip
        run = EvalRun_.objects.create(
            variant=variant, suite="quick", suite_version="1", engine_version="e", metrics=metrics,
            results={"n-samples": {"hellaswag": {"original": 10042, "effective": 100}}},
        )  # fmt: skip
        for task, value, ci in (("arc_easy", 0.3, (-0.0006, 0.0006)), ("hellaswag", 0.28 if name == "noisy" else 0.3, hs_ci)):  # fmt: skip
            apps.get_model("results", "Recovery").objects.create(
                variant_run=run, base_run=base_run, task=task, metric="acc_norm", base_value=0.3, variant_value=value,
                recovery=value / 0.3, diff=value - 0.3, ci_low=ci[0], ci_high=ci[1], threshold=0.99, passed=True,
            )  # fmt: skip
        ids[name] = variant.pk

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    noisy, sure = Variant.objects.get(pk=ids["noisy"]), Variant.objects.get(pk=ids["sure"])
    assert (noisy.gate, sure.gate) == ("inconclusive", "validated")
    hs = Recovery.objects.get(variant_run__variant=noisy, task="hellaswag")
    assert (hs.recovery_low, hs.recovery_high) == pytest.approx(((0.3 - 0.058) / 0.3, (0.3 + 0.018) / 0.3))
    assert hs.verdict == "inconclusive" and hs.documents_needed > 100
    assert (
        hs.verdict_note == f"about {hs.documents_needed:,} documents would settle it (100 scored of the task's 10,042)"
    )
    assert noisy.gate_report["summary"] == (
        f"inconclusive at this sample size: the 95% interval of the recovery straddles 99% on hellaswag: {hs.verdict_note}"
    )
    assert "passed" not in noisy.gate_report and noisy.gate_report["tasks"]["hellaswag"]["verdict"] == "inconclusive"
    assert sure.gate_report["summary"] == "validated: the 95% interval of every task's recovery lies at or above 99%"


@pytest.mark.e2e
def test_it_shows_the_three_badges_apart_in_a_browser(browser, live_server, judged):
    context = browser.new_context(base_url=live_server.url)
    try:
        page = context.new_page()
        page.goto("/")
        colours = {}
        for name, label in (("clear", "validated"), ("drop", "failed"), ("few", "inconclusive at this sample size")):
            badge = page.locator(f'li.variant[data-name="org/tiny-{name}"] .gate')
            assert badge.inner_text() == label
            colours[name] = badge.evaluate("e => getComputedStyle(e).backgroundColor")
        assert len(set(colours.values())) == 3  # told apart at a glance, not only by reading
    finally:
        context.close()
