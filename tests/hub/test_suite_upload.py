"""Users' own evaluation suites: what an upload stores (its files by content, the dataset commit
it reads), what it refuses with nothing stored, versions that never change once a job used them,
and who may see and use a suite."""

import io
import re
from pathlib import Path

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command

from hub.hfapi.models import Repo
from hub.jobs.forms import JobForm
from hub.jobs.models import Job, Recipe
from hub.suites.definition import SuiteRefused, read_uploads
from hub.suites.models import Suite, SuiteInUse
from tests.suite_files import TASK, make_dataset, suite_files


@pytest.fixture
def dataset(fixtures_dir, tmp_path, alice) -> str:
    return make_dataset(fixtures_dir, tmp_path / "arc-mini", "alice/arc-mini", "alice")


def stored(tmp_path: Path) -> list[Path]:
    """Every file the suites keep (the test's ARTIFACTS_DIR)."""
    return sorted(p for p in (tmp_path / "artifacts").rglob("*") if p.is_file())


def upload(user, files: dict[str, bytes], **options) -> tuple[Suite, bool]:
    name = next(iter(files))
    return Suite.upload(user, name, files, **options)


def test_it_stores_the_files_by_content_and_pins_the_data(alice, dataset, tmp_path, fixtures_dir):
    suite, created = upload(alice, suite_files())
    assert created and suite.reference == "alice/arc-mini@1"
    assert suite.tasks == [
        {
            "task": None,
            "file": "arc_mini.yaml",
            "num_fewshot": 0,
            "limit": 12,
            "metric": "acc_norm",
            "filter": "none",
            "chat_template": False,
        }
    ]
    head = Repo.objects.get(namespace="alice", name="arc-mini").head
    assert suite.datasets["alice/arc-mini"]["commit"] == head.sha
    assert [f["path"] for f in suite.datasets["alice/arc-mini"]["files"]] == ["test.jsonl", "train.jsonl"]
    assert len(stored(tmp_path)) == 2 and suite.definition().files == suite_files()

    again, created = upload(alice, suite_files())  # the same content: that version, nothing new
    assert (again.pk, created) == (suite.pk, False)
    changed, created = upload(alice, suite_files(limit=10))
    assert created and changed.version == 2 and changed.content_hash != suite.content_hash

    # new data in the repository does not change what a version reads
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "validation.jsonl").write_text('{"question": "?", "choices": ["a"], "label": 0}\n')
    call_command("import_dataset", str(tmp_path / "more"), "alice/arc-mini")
    assert Suite.objects.get(pk=suite.pk).datasets["alice/arc-mini"]["commit"] == head.sha


BAD_TASK = TASK.format(dataset="alice/arc-mini")
REFUSED = {
    "an unknown built-in task": (
        {"suite.yaml": b"suite: s\ntasks:\n  - {task: arc_hard}\n"},
        r"suite.yaml: tasks\[0\].task: unknown task 'arc_hard'",
    ),
    "an unknown suite key": (
        {"suite.yaml": b"suite: s\nowner: bob\ntasks:\n  - {task: arc_easy}\n"},
        r"suite.yaml: unknown keys \['owner'\]",
    ),
    "an unknown task key": (
        {"suite.yaml": b"suite: s\ntasks:\n  - {task: arc_easy, shots: 3}\n"},
        r"suite.yaml: tasks\[0\]: unknown task keys \['shots'\]",
    ),
    "a version of its own": (
        {"suite.yaml": b"suite: s\nversion: 7\ntasks:\n  - {task: arc_easy}\n"},
        "suite.yaml: version: the hub numbers a suite's versions itself",
    ),
    "an unknown key in a task file": (
        {"arc_mini.yaml": BAD_TASK.replace("output_type:", "doc_to_texts: x\noutput_type:").encode()},
        "arc_mini.yaml: unknown key 'doc_to_texts'",
    ),
    "a !function tag": (
        {"arc_mini.yaml": BAD_TASK.replace("doc_to_target: label", "doc_to_target: !function utils.target").encode()},
        "arc_mini.yaml: line 8: the tag !function is refused",
    ),
    "a Python hook": (
        {"arc_mini.yaml": BAD_TASK.replace("output_type:", "process_docs: utils.process\noutput_type:").encode()},
        "arc_mini.yaml: process_docs: refused: it asks for a Python function",
    ),
    "a class": (
        {"arc_mini.yaml": BAD_TASK.replace("output_type:", "class: mymodule.MyTask\noutput_type:").encode()},
        "arc_mini.yaml: class: refused",
    ),
    "an include outside the upload": (
        {"arc_mini.yaml": ("include: ../../lm_eval/tasks/arc/arc_easy.yaml\n" + BAD_TASK).encode()},
        "arc_mini.yaml: include: '../../lm_eval/tasks/arc/arc_easy.yaml' is not one of the uploaded files",
    ),
    "a metric lm-eval would fetch": (
        {"arc_mini.yaml": BAD_TASK.replace("metric: acc_norm", "metric: sacrebleu_from_the_hub").encode()},
        r"arc_mini.yaml: metric_list\[1\].metric: 'sacrebleu_from_the_hub' is not one of lm-eval's metrics",
    ),
    "a negative limit": ({"suite.yaml": b"suite: s\ntasks:\n  - {task: arc_easy, limit: -1}\n"}, r"tasks\[0\].limit"),
    "a zero limit": ({"suite.yaml": b"suite: s\ntasks:\n  - {task: arc_easy, limit: 0}\n"}, r"tasks\[0\].limit"),
    "a fractional limit": (
        {"suite.yaml": b"suite: s\ntasks:\n  - {task: arc_easy, limit: 2.5}\n"},
        r"tasks\[0\].limit",
    ),
    "a huge limit": ({"suite.yaml": b"suite: s\ntasks:\n  - {task: arc_easy, limit: 100001}\n"}, r"tasks\[0\].limit"),
    "too many shots": (
        {"suite.yaml": b"suite: s\ntasks:\n  - {task: arc_easy, num_fewshot: 65}\n"},
        r"tasks\[0\].num_fewshot: must be a whole number from 0 to 64",
    ),
    "a zero threshold": (
        {"suite.yaml": b"suite: s\nrecovery_threshold: 0\ntasks:\n  - {task: arc_easy}\n"},
        r"recovery_threshold: must be a fraction in \(0, 1\]",
    ),
    "a threshold above one": (
        {"suite.yaml": b"suite: s\nrecovery_threshold: 1.5\ntasks:\n  - {task: arc_easy}\n"},
        "recovery_threshold",
    ),
    "a task file outside the upload": (
        {"suite.yaml": b"suite: s\ntasks:\n  - {file: ../arc_mini.yaml}\n"},
        r"tasks\[0\].file: '../arc_mini.yaml' is not one of the uploaded files",
    ),
    "data files outside the upload": (
        {
            "arc_mini.yaml": BAD_TASK.replace("dataset_path: alice/arc-mini", "dataset_path: json")
            .replace("test_split:", "dataset_kwargs: {data_files: {test: /etc/passwd}}\ntest_split:")
            .encode()
        },
        "dataset_kwargs.data_files: '/etc/passwd' is not one of the uploaded files",
    ),
    "a dataset from elsewhere": (
        {"arc_mini.yaml": BAD_TASK.replace("alice/arc-mini", "https://example.com/arc.json").encode()},
        "dataset_path: 'https://example.com/arc.json' is neither a dataset repository of this hub",
    ),
    "a missing dataset repository": (
        {"arc_mini.yaml": BAD_TASK.replace("alice/arc-mini", "alice/nope").encode()},
        "arc_mini.yaml: dataset_path: alice/nope: no dataset repository of this hub by that name that you may read",
    ),
    "another user's private dataset": (
        {"arc_mini.yaml": BAD_TASK.replace("alice/arc-mini", "bob/secret").encode()},
        "arc_mini.yaml: dataset_path: bob/secret: no dataset repository of this hub by that name that you may read",
    ),
    "a missing split": (
        {"arc_mini.yaml": BAD_TASK.replace("test_split: test", "test_split: validation").encode()},
        "arc_mini.yaml: lm-eval cannot build the task from it: KeyError: 'validation'",
    ),
    "a missing column": (
        {"arc_mini.yaml": BAD_TASK.replace("{{question}}", "{{stem}}").encode()},
        "arc_mini.yaml: .*'stem' is undefined",
    ),
    "a template that reaches Python": (
        {"arc_mini.yaml": BAD_TASK.replace("{{question}}", "{{ question.__class__.__mro__ }}").encode()},
        "arc_mini.yaml: .*SecurityError: access to attribute '__class__' of 'str' object is unsafe",
    ),
    "a metric the task does not report": (
        {"suite.yaml": suite_files()["suite.yaml"].replace(b"acc_norm", b"exact_match")},
        "arc_mini.yaml: metric: the task reports acc, acc_norm, not 'exact_match'",
    ),
    "a file the suite does not use": ({"notes.txt": b"hello"}, "notes.txt: not used by the suite"),
}


def refused(label: str, message: str, attempt) -> None:
    try:
        attempt()
    except SuiteRefused as exc:
        assert re.search(message, str(exc)), f"{label}: refused, but saying {exc}"
    else:
        pytest.fail(f"{label}: accepted")


def test_it_refuses_bad_suites_with_nothing_stored(alice, bob, dataset, tmp_path, fixtures_dir):
    make_dataset(fixtures_dir, tmp_path / "secret", "bob/secret", "bob", private=True)
    before = stored(tmp_path)
    for label, (change, message) in REFUSED.items():
        files = {**suite_files(), **change}
        if "suite.yaml" in change and "arc_mini.yaml" not in change["suite.yaml"].decode():
            del files["arc_mini.yaml"]
        refused(label, message, lambda: upload(alice, files))  # noqa: B023 - called at once
        assert not Suite.objects.exists() and stored(tmp_path) == before, label


def test_it_refuses_unsafe_file_names_and_too_much(settings):
    settings.SUITE_MAX_FILES, settings.SUITE_MAX_FILE_BYTES = 4, 100
    cases = {
        # Django keeps only the last segment of an uploaded file's name (and refuses ".."); the rest is checked here
        "a hidden file": ({"suite.yaml": b"suite: s", ".env": b"x"}, r"file name '.env' is not accepted"),
        "a bidi override": (
            {"suite.yaml": b"suite: s", "task\u202elmay.yaml": b"x"},
            r"file name 'task\\u202elmay.yaml' is not accepted",
        ),
        "too many files": (
            {"suite.yaml": b"suite: s", **{f"f{i}.csv": b"a" for i in range(4)}},
            "5 files: a suite upload holds at most 4",
        ),
        "too large a file": ({"suite.yaml": b"suite: s", "big.csv": b"a" * 101}, "big.csv: larger than 100 bytes"),
    }
    for label, (files, message) in cases.items():
        uploads = [SimpleUploadedFile(name, data) for name, data in files.items()]
        refused(label, message, lambda: read_uploads(uploads[0], uploads[1:]))  # noqa: B023 - called at once


def test_it_never_changes_a_version_a_job_used(alice, dataset, llama, tmp_path):
    v1, _ = upload(alice, suite_files())
    Job.submit(
        base_model=llama, recipes=[Recipe.for_preset("w8a8-int8")], owner=alice, suite=v1.reference, user_suite=v1
    )
    with pytest.raises(SuiteInUse, match="alice/arc-mini@1 was used by a job, so it cannot change"):
        upload(alice, suite_files(limit=10), replace=True)
    with pytest.raises(SuiteInUse, match="was used by a job, so it stays"):
        v1.delete_unused()
    assert Suite.objects.get(pk=v1.pk).content_hash == v1.content_hash

    v2, _ = upload(alice, suite_files(limit=10))
    v2_files = stored(tmp_path)
    replaced, created = upload(alice, suite_files(limit=8), replace=True)  # unused: replaced in place
    assert created and (replaced.pk, replaced.version) == (v2.pk, 2) and replaced.tasks[0]["limit"] == 8
    assert len(stored(tmp_path)) == len(v2_files)  # the replaced suite YAML is gone, the new one kept
    replaced.delete_unused()
    assert list(Suite.objects.values_list("version", flat=True)) == [1]
    assert len(stored(tmp_path)) == 2  # v1's files, still used by v1


def test_it_shows_and_offers_a_private_suite_to_its_owner_only(alice, bob, staff, dataset, llama):
    suite, _ = upload(alice, suite_files(), private=True)
    assert list(Suite.objects.visible_to(alice)) == [suite] == list(Suite.objects.visible_to(staff))
    assert not Suite.objects.visible_to(bob).exists() and not Suite.objects.visible_to(AnonymousUser()).exists()

    fields = {"base": llama.pk, "presets": ["w8a8-int8"], "revision": "main", "benchmark_profile": ""}
    form = JobForm(data={**fields, "suite": "alice/arc-mini"}, user=bob)
    assert not form.is_valid() and form.errors["suite"] == ["no suite alice/arc-mini that you may read"]
    assert "alice/arc-mini@1" not in dict(form.fields["suite"].widget.choices)
    form = JobForm(data={**fields, "suite": "alice/arc-mini"}, user=alice)
    assert "alice/arc-mini@1" in dict(form.fields["suite"].widget.choices)
    assert form.is_valid(), form.errors
    job = form.submit()
    assert (job.suite, job.user_suite) == ("alice/arc-mini@1", suite)


def test_it_refuses_a_public_suite_on_data_the_submitter_may_not_read(alice, bob, llama, fixtures_dir, tmp_path):
    make_dataset(fixtures_dir, tmp_path / "arc-mini", "alice/arc-mini", "alice", private=True)
    upload(alice, suite_files())  # public, on alice's private data
    form = JobForm(
        data={"base": llama.pk, "presets": ["w8a8-int8"], "suite": "alice/arc-mini@1", "benchmark_profile": ""},
        user=bob,
    )
    assert not form.is_valid()
    assert form.errors["suite"] == [
        "the suite alice/arc-mini@1 reads the dataset alice/arc-mini, which you may not read "
        "(or which no longer holds the commit the suite pinned)"
    ]


def test_it_submits_a_job_on_a_suite_from_the_command_line(alice, bob, dataset, llama):
    suite, _ = upload(alice, suite_files(), private=True)
    args = ["submit_job", llama.name, "--recipe", "w8a8-int8", "--suite", "alice/arc-mini"]
    call_command(*args, "--user", "alice", stdout=io.StringIO())
    job = Job.objects.get()
    assert (job.suite, job.user_suite) == ("alice/arc-mini@1", suite)
    with pytest.raises(CommandError, match="no suite alice/arc-mini that you may read"):
        call_command(*args, "--user", "bob", stdout=io.StringIO())
    assert Job.objects.count() == 1
