"""A suite may apply the chat template to some tasks and not others: each task then scores as it
would in a run of its own setting, and a run resumes from its request store as any other."""

from dataclasses import replace

import pytest
import yaml

from evals import EvalOptions, Suite, TaskSpec, prepare, run
from evals.store import RequestStore
from evals.suites import suite_fields

pytestmark = pytest.mark.slow

GSM8K = TaskSpec("gsm8k", 2, limit=2, metric="exact_match", filter="strict-match", chat_template=True)
ARC = TaskSpec("arc_easy", 0, limit=4, metric="acc_norm")
MIXED = Suite("mixed", "1", "test suite", (GSM8K, ARC))


@pytest.fixture(scope="module")
def mixed(chat_stories, gsm8k_data, tmp_path_factory):
    plan = prepare(chat_stories, MIXED, EvalOptions(data_dir=gsm8k_data))
    store = RequestStore.open(tmp_path_factory.mktemp("store"), "stories260k-chat", plan.settings_key)
    return plan, store, run(plan, store=store)


def test_it_scores_each_task_as_a_run_of_its_own_setting(mixed, chat_stories, gsm8k_data):
    plan, _, result = mixed
    assert [(t["name"], t["chat_template"]) for t in plan.settings["tasks"]] == [("gsm8k", True), ("arc_easy", False)]
    assert plan.settings["chat_template"]  # the template's digest: a task uses it
    for spec in (GSM8K, ARC):
        alone = run(prepare(chat_stories, Suite(spec.name, "1", "", (spec,)), EvalOptions(data_dir=gsm8k_data)))
        assert [s for s in result.samples if s["task"] == spec.name] == alone.samples
        assert result.metrics[spec.name] == alone.metrics[spec.name]

    gsm8k = next(s for s in result.samples if s["task"] == "gsm8k")
    prompt = gsm8k["arguments"][0][0]
    # two shots and the question, each a user turn, each shot answered in an assistant turn
    assert prompt.count("<|user|>") == 3 and prompt.count("<|assistant|>") == 3
    assert prompt.endswith("<|assistant|>")
    arc = next(s for s in result.samples if s["task"] == "arc_easy")
    assert "<|" not in arc["arguments"][0][0] and arc["arguments"][0][0].startswith("Question: ")


def test_it_resumes_a_mixed_run_from_its_request_store(mixed):
    plan, store, first = mixed
    assert first.requests["restored"] == 0 and len(store) == first.requests["scored"] > 0
    again = run(plan, store=store)
    assert again.requests == {"scored": 0, "restored": first.requests["scored"]}
    assert again.samples == first.samples and again.metrics == first.metrics


def test_it_takes_the_flag_per_task_from_a_suite_file_and_the_whole_run_option(chat_stories, gsm8k_data):
    raw = yaml.safe_load(
        "suite: s\ntasks:\n  - {task: gsm8k, chat_template: true}\n  - {task: arc_easy, metric: acc_norm}\n"
    )
    fields = suite_fields(raw, "suite.yaml")
    assert [t["chat_template"] for t in fields["tasks"]] == [True, False]
    assert fields["chat_template"] is False  # true only when every task applies it

    off = replace(MIXED, tasks=(replace(GSM8K, chat_template=False), ARC))
    plan = prepare(chat_stories, off, EvalOptions(data_dir=gsm8k_data))
    assert plan.settings["chat_template"] is None
    forced = prepare(chat_stories, off, EvalOptions(data_dir=gsm8k_data, chat_template=True))
    assert [t["chat_template"] for t in forced.settings["tasks"]] == [True, True]
    assert forced.settings["chat_template"] and forced.settings_key != plan.settings_key


def test_it_gives_each_task_the_lm_eval_command_of_its_own_setting(mixed):
    from hub.results.reproduce import lm_eval_command

    plan = mixed[0]
    commands = {t["name"]: lm_eval_command(plan.settings, t, "model") for t in plan.settings["tasks"]}
    assert "--apply_chat_template --fewshot_as_multiturn" in commands["gsm8k"]
    assert "--apply_chat_template" not in commands["arc_easy"]
