"""Stock lm-eval tasks read from the local layouts of tests/fixtures/datasets, user task files
and suite files."""

import json
from dataclasses import replace

import pytest
from lm_eval.tasks import TaskManager

from evals import SUITES, EvalOptions, SuiteError, TaskSpec, get_suite, prepare
from evals.run import _load
from evals.tasks import build


def load(spec: TaskSpec, data_dir):
    return _load(TaskManager(include_defaults=False), build(spec, data_dir).config)


def rows(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_it_reads_arc_in_ai2s_layout_with_the_stock_prompt(data_dir):
    task = load(TaskSpec("arc_easy"), data_dir)
    raw = rows(data_dir / "arc_easy" / "test.jsonl")
    docs = list(task.eval_docs)
    assert len(docs) == len(raw) == 2376
    for doc, r in zip(docs[:50], raw):
        assert task.doc_to_text(doc) == f"Question: {r['question']['stem']}\nAnswer:"
        assert task.doc_to_choice(doc) == [c["text"] for c in r["question"]["choices"]]
        assert [c["label"] for c in r["question"]["choices"]][task.doc_to_target(doc)] == r["answerKey"]


def test_it_rebuilds_winogrande_sentences_from_mosaicmls_layout(data_dir):
    task = load(TaskSpec("winogrande"), data_dir)
    raw = rows(data_dir / "winogrande" / "validation.jsonl")
    docs = list(task.eval_docs)
    assert len(docs) == len(raw) == 1267
    for doc, r in zip(docs, raw):
        # the prompts lm-eval scores: each option's partial sentence, then the text after the blank
        assert task.doc_to_choice(doc) == r["context_options"]
        assert task.doc_to_target(doc) == r["continuation"].strip()
        assert task.doc_to_text(doc) == r["gold"]


def test_it_splits_raw_wikitext_into_articles(data_dir):
    task = load(TaskSpec("wikitext", metric="word_perplexity"), data_dir)
    docs = list(task.eval_docs)
    text = (data_dir / "wikitext2_raw" / "test.txt").read_text()
    assert len(docs) == 62  # the test split of EleutherAI/wikitext_document_level
    assert all(d["page"].startswith(" = ") for d in docs)
    assert "\n".join(d["page"] for d in docs) == text.removeprefix(" \n")  # nothing lost but the leading blank line


def test_it_groups_the_mmlu_subjects_with_dev_questions_as_shots(data_dir):
    group = load(TaskSpec("mmlu", 5), data_dir)
    tasks = {t.task_name: t for t in group.get_all_tasks()}
    assert len(tasks) == 57
    anatomy = tasks["mmlu_anatomy"]
    doc = next(iter(anatomy.eval_docs))
    assert doc["choices"] and isinstance(doc["answer"], int)
    assert sum(len(list(t.eval_docs)) for t in tasks.values()) == 14042
    assert len(list(anatomy.fewshot_docs())) == 5


def test_it_refuses_shots_the_local_data_cannot_supply(data_dir):
    with pytest.raises(SuiteError, match="25-shot needs a training or few-shot split.*test"):
        build(TaskSpec("arc_challenge", 25), data_dir)
    with pytest.raises(SuiteError, match="no local data at"):
        build(TaskSpec("truthfulqa_mc2"), data_dir)
    with pytest.raises(SuiteError, match="unknown task 'arc_hard'"):
        build(TaskSpec("arc_hard"), data_dir)


def test_it_names_the_hub_datasets_when_no_data_directory_is_set():
    built = {spec.name: build(spec, None) for spec in SUITES["openllm-v1"].tasks}
    assert built["arc_challenge"].data == "hf:allenai/ai2_arc/ARC-Challenge"
    assert built["mmlu"].data == "hf:cais/mmlu"
    assert built["gsm8k"].config["num_fewshot"] == 5


def test_it_finds_every_quick_and_wikitext_task_in_the_fixtures(data_dir, stories260k):
    for name in ("quick", "wikitext"):
        plan = prepare(stories260k, name, EvalOptions(data_dir=data_dir))
        assert all(t["data"].startswith("local:") for t in plan.settings["tasks"])


def test_it_loads_a_users_task_file_with_data_beside_it(tmp_path, data_dir):
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "colours.jsonl").write_text(
        "\n".join(
            json.dumps({"q": f"What colour is {x}?", "choices": ["red", "blue"], "answer": i % 2})
            for i, x in enumerate(["a tomato", "the sky", "a cherry"])
        )
    )
    (tmp_path / "tasks" / "colours.yaml").write_text(
        "task: colours\n"
        "dataset_path: json\n"
        "dataset_kwargs:\n  data_files:\n    test: colours.jsonl\n"  # relative to this file
        "test_split: test\n"
        "output_type: multiple_choice\n"
        'doc_to_text: "Question: {{q}}\\nAnswer:"\n'
        'doc_to_choice: "{{choices}}"\n'
        "doc_to_target: answer\n"
        "metric_list:\n  - metric: acc\n"
    )
    (tmp_path / "suite.yaml").write_text(
        "suite: mine\nversion: '2'\nrecovery_threshold: 0.9\ntasks:\n"
        "  - {file: tasks/colours.yaml, metric: acc}\n  - {task: arc_easy, limit: 5, metric: acc_norm}\n"
    )
    suite = get_suite(str(tmp_path / "suite.yaml"))
    assert (suite.name, suite.version, suite.recovery_threshold) == ("mine", "2", 0.9)
    assert [t.name for t in suite.tasks] == ["colours", "arc_easy"]
    task = load(suite.tasks[0], data_dir)
    docs = list(task.eval_docs)
    assert [task.doc_to_text(d) for d in docs][1] == "Question: What colour is the sky?\nAnswer:"
    assert build(suite.tasks[0], data_dir).data.startswith("file:")


def test_it_explains_a_bad_suite_file(tmp_path):
    (tmp_path / "bad.yaml").write_text("suite: x\ntasks:\n  - {limit: 3}\n")
    with pytest.raises(SuiteError, match="needs `task: NAME` or `file: TASK.yaml`"):
        get_suite(str(tmp_path / "bad.yaml"))
    with pytest.raises(SuiteError, match="unknown suite 'nope'"):
        get_suite("nope")


def test_it_keys_settings_on_everything_that_moves_the_numbers(stories260k, data_dir):
    options = EvalOptions(data_dir=data_dir)
    key = prepare(stories260k, "quick", options).settings_key
    assert prepare(stories260k, "quick", options).settings_key == key
    quick = SUITES["quick"]
    changed = [
        prepare(stories260k, replace(quick, version="2"), options),
        prepare(stories260k, replace(quick, fewshot_seed=1), options),
        prepare(stories260k, replace(quick, tasks=quick.tasks[:1]), options),
        prepare(stories260k, quick, replace(options, dtype="bfloat16")),
        prepare(stories260k, quick, replace(options, add_bos_token=False)),
        prepare(stories260k, quick, EvalOptions()),  # the same tasks, from the hub's copies
    ]
    assert len({key, *(p.settings_key for p in changed)}) == 1 + len(changed)
