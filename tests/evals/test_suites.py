"""The suites the hub offers are the ones the library defines; the chat suite runs end to end and
the leaderboard suite names the data it lacks."""

from dataclasses import replace
from pathlib import Path

import lm_eval
import pytest
import yaml

from evals import SUITES, EvalOptions, SuiteError, evaluate, prepare
from evals.ifollow import follows
from evals.tasks import build, stock_task_names
from hub.jobs.presets import SUITES as OFFERED


def test_it_offers_the_web_form_exactly_the_librarys_suites():
    assert list(OFFERED) == list(SUITES)
    for suite in SUITES.values():
        assert suite.version and suite.description
        assert {t.name for t in suite.tasks} <= set(stock_task_names())


@pytest.mark.slow
def test_it_runs_chat_quick_end_to_end(chat_stories, gsm8k_data):
    gsm8k, ifollow = SUITES["chat-quick"].tasks
    assert (gsm8k.num_fewshot, gsm8k.metric_key, ifollow.metric_key) == (
        5,
        "exact_match,strict-match",
        "prompt_level_strict_acc,none",
    )
    small = replace(SUITES["chat-quick"], tasks=(replace(gsm8k, limit=2), replace(ifollow, limit=3)))
    result = evaluate(chat_stories, small, EvalOptions(data_dir=gsm8k_data))

    assert result.settings["chat_template"] and all(t["chat_template"] for t in result.settings["tasks"])
    assert [(m["metric"], m["n"]) for m in result.metrics.values()] == [
        ("exact_match,strict-match", 2),
        ("prompt_level_strict_acc,none", 3),
    ]
    prompts = [s for s in result.samples if s["task"] == "ifollow"]
    assert len(prompts) == 3
    for s in prompts:
        # the prompt as a chat turn, scored by our checker on the greedy answer
        assert s["arguments"][0][0] == f"<|user|>{s['doc']['prompt']}\n<|assistant|>"
        assert s["prompt_level_strict_acc"] == follows(s["resps"][0][0], s["doc"]["instructions"])
    strict = [s for s in result.samples if s["task"] == "gsm8k" and s["filter"] == "strict-match"]
    assert [s["arguments"][0][0].count("<|user|>") for s in strict] == [6, 6]  # five shots as turns, then the question
    for task, entry in result.metrics.items():
        metric, flt = entry["metric"].split(",")
        scores = [s[metric] for s in result.samples if s["task"] == task and s["filter"] == flt]
        assert entry["value"] == pytest.approx(sum(scores) / len(scores))


def test_it_defines_openllm_v2_as_lm_evals_leaderboard_group():
    suite = SUITES["openllm-v2"]
    group = yaml.safe_load((Path(lm_eval.__file__).parent / "tasks" / "leaderboard" / "leaderboard.yaml").read_text())
    assert sorted(t.name for t in suite.tasks) == sorted(group["task"])
    assert all(t.chat_template and t.limit is None for t in suite.tasks)
    shots = {t.name: t.num_fewshot for t in suite.tasks}
    assert shots == {
        "leaderboard_ifeval": 0,
        "leaderboard_bbh": 3,
        "leaderboard_math_hard": 4,
        "leaderboard_gpqa": 0,
        "leaderboard_musr": 0,
        "leaderboard_mmlu_pro": 5,
    }
    for spec in suite.tasks:
        try:
            config = build(spec, None).config
        except SuiteError as exc:  # lm-eval's code for it needs an extra this install lacks
            assert "pip install 'lm-eval[" in str(exc)
            continue
        metrics = [m["metric"] for m in config.get("aggregate_metric_list") or config["metric_list"]]
        assert spec.metric in metrics and spec.filter == "none"


def test_it_names_the_dataset_repositories_openllm_v2_lacks(stories260k, tmp_path):
    with pytest.raises(SuiteError) as error:
        prepare(stories260k, "openllm-v2", EvalOptions(data_dir=tmp_path))
    message = str(error.value)
    for repo in (
        "wis-k/instruction-following-eval",
        "SaylorTwift/bbh",
        "DigitalLearningGmbH/MATH-lighteval",
        "Idavidrein/gpqa",
        "TAUR-Lab/MuSR",
        "TIGER-Lab/MMLU-Pro",
    ):
        assert f": {repo}" in message  # each task with the repository it reads
    assert f"no copy under {tmp_path}" in message
    assert "manage.py import_dataset FOLDER OWNER/NAME" in message and "<data directory>/OWNER/NAME" in message
