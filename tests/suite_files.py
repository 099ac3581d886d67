"""A user suite for the tests: one multiple-choice task on a few ARC-Easy questions (from
tests/fixtures) kept in a dataset repository of the hub, as its uploader would write it."""

import json
from pathlib import Path

from django.core.management import call_command

TASK = """\
task: arc_mini
dataset_path: {dataset}
test_split: test
fewshot_split: train
output_type: multiple_choice
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: label
metric_list:
  - metric: acc
  - metric: acc_norm
"""
SUITE = """\
suite: arc-mini
description: ARC-Easy questions from a dataset repository of this hub
recovery_threshold: 0.9
tasks:
  - {{file: arc_mini.yaml, metric: acc_norm, limit: {limit}}}
"""


def arc_rows(fixtures_dir: Path, n: int) -> list[dict]:
    """The first n ARC-Easy test questions, flattened: question, choices, label (the answer's index)."""
    rows = []
    for line in (fixtures_dir / "datasets" / "arc_easy" / "test.jsonl").read_text().splitlines()[:n]:
        r = json.loads(line)
        labels = [c["label"] for c in r["question"]["choices"]]
        rows.append(
            {
                "question": r["question"]["stem"],
                "choices": [c["text"] for c in r["question"]["choices"]],
                "label": labels.index(r["answerKey"]),
            }
        )
    return rows


def make_dataset(fixtures_dir: Path, folder: Path, repo_id: str, user: str, private: bool = False, n: int = 16) -> str:
    """A dataset repository of the hub with a train split (4 questions) and a test split (the rest)."""
    rows = arc_rows(fixtures_dir, n)
    folder.mkdir(parents=True)
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:4]))
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[4:]))
    (folder / "README.md").write_text("# ARC-Easy, a few questions\n")
    call_command("import_dataset", str(folder), repo_id, "--user", user, *(["--private"] if private else []))
    return repo_id


def suite_files(dataset: str = "alice/arc-mini", limit: int = 12) -> dict[str, bytes]:
    """The upload: the suite YAML first, then the task YAML it names."""
    return {
        "suite.yaml": SUITE.format(limit=limit).encode(),
        "arc_mini.yaml": TASK.format(dataset=dataset).encode(),
    }
