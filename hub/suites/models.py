"""Users' own evaluation suites: one row per version of `owner/name`, its files stored by content
(hub.suites.store), the dataset commits it reads pinned, and the content hash the evaluation
settings carry. A version a job used never changes (the job's foreign key protects it); the
owner may replace or delete one no job used."""

import dataclasses
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import models, transaction

from hub.catalog.models import OwnedQuerySet
from hub.hfapi import storage
from hub.hfapi.models import Repo
from hub.suites import store
from hub.suites.definition import NOT_DATA, Definition, SuiteRefused, check_builds, check_upload, materialize

if TYPE_CHECKING:
    import evals

# How a job names a suite: `owner/name@version`, or `owner/name` for its newest version.
REFERENCE = re.compile(r"([A-Za-z0-9@.+_-]{1,150})/([A-Za-z0-9][A-Za-z0-9._-]{0,79})(?:@([1-9][0-9]{0,8}))?")
# Evaluation rows keep the suite's reference in 100 characters.
MAX_REFERENCE = 100


class SuiteInUse(SuiteRefused):
    """A change to a suite version a job used."""


class SuiteQuerySet(OwnedQuerySet):
    base_lookup = None  # a suite comes from no base model

    def resolve(self, reference: str) -> "Suite":
        """The suite among these that `reference` names: `owner/name@version`, or `owner/name`
        for its newest version."""
        match = REFERENCE.fullmatch(reference)
        if match is None:
            raise SuiteRefused(
                f"{reference!r} is not a suite: give a built-in suite's name, or owner/name[@version] of a suite you may read"
            )
        owner, name, version = match.groups()
        rows = self.filter(owner__username=owner, name=name)
        if version:
            rows = rows.filter(version=int(version))
        suite = rows.select_related("owner").order_by("-version").first()
        if suite is None:
            raise SuiteRefused(f"no suite {reference} that you may read")
        return suite

    def for_job(self, reference: str, user) -> "Suite | None":
        """The user suite version a job on `reference` runs, its data checked readable by the
        submitting `user`; None for a built-in suite or no suite. Without a user (an operator's
        command), any suite, as its owner would run it."""
        from evals import SUITES

        if not reference or reference in SUITES:
            return None
        if user is None:
            return self.resolve(reference)
        suite = self.visible_to(user).resolve(reference)
        suite.check_usable_by(user)
        return suite


class Suite(models.Model):
    objects = SuiteQuerySet.as_manager()

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="suites")
    name = models.CharField(max_length=80)
    version = models.PositiveIntegerField()
    private = models.BooleanField(default=False)
    description = models.TextField(blank=True)
    recovery_threshold = models.FloatField(null=True, blank=True, help_text="none: the recipe's default")
    fewshot_seed = models.BigIntegerField(default=1234)
    tasks = models.JSONField(
        default=list, help_text="[{task, file, num_fewshot, limit, metric, filter, chat_template}]"
    )
    suite_file = models.CharField(max_length=100, help_text="which of the files is the suite YAML")
    files = models.JSONField(default=list, help_text="[{name, size, sha256}], stored by sha256")
    datasets = models.JSONField(
        default=dict, help_text="{repo id: {commit, files: [{path, size, sha256}]}}: the data pinned at upload"
    )
    content_hash = models.CharField(max_length=64, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "-version"]
        constraints = [models.UniqueConstraint(fields=["owner", "name", "version"], name="suite_owner_name_version")]

    def __str__(self) -> str:
        return self.reference

    @property
    def full_name(self) -> str:
        return f"{self.owner.username}/{self.name}"

    @property
    def reference(self) -> str:
        return f"{self.full_name}@{self.version}"

    @property
    def used(self) -> bool:
        return self.jobs.exists()

    @property
    def chat_template(self) -> bool:
        """Every task applies the tokenizer's chat template."""
        return all(t["chat_template"] for t in self.tasks)

    @classmethod
    def upload(
        cls, owner, suite_file: str, files: dict[str, bytes], private: bool = False, replace: bool = False
    ) -> tuple["Suite", bool]:
        """Check the upload whole (hub.suites.definition), then store it as the next version of
        `owner/name`, or in place of the newest version when `replace` and no job used it.
        Returns the suite and whether anything new was stored: an upload identical to the newest
        version is that version. Refuses (SuiteRefused) with nothing stored."""
        definition = check_upload(suite_file, files, lambda repo_id: pin_dataset(owner, repo_id))
        if len(f"{owner.username}/{definition.name}") > MAX_REFERENCE - 10:  # room for @version
            raise SuiteRefused(
                f"{suite_file}: suite: {owner.username}/{definition.name} is too long a reference; "
                f"user and suite name together take at most {MAX_REFERENCE - 10} characters"
            )
        check_builds(definition, link_dataset)
        content_hash = definition.content_hash
        replaced: set[str] = set()
        with transaction.atomic():
            # one upload of a user's at a time: version numbers are counted, not guessed
            list(get_user_model().objects.select_for_update().filter(pk=owner.pk).values_list("pk"))
            versions = cls.objects.select_for_update().filter(owner=owner, name=definition.name)
            latest = versions.order_by("-version").first()
            if latest and latest.content_hash == content_hash:
                if latest.private != private:
                    latest.private = private
                    latest.save(update_fields=["private", "updated_at"])
                return latest, False
            if replace:
                if latest is None:
                    raise SuiteRefused(f"{owner.username}/{definition.name} has no version to replace")
                if latest.used:
                    raise SuiteInUse(
                        f"{latest.reference} was used by a job, so it cannot change; upload without replace to "
                        f"make version {latest.version + 1}"
                    )
                suite, replaced = latest, {f["sha256"] for f in latest.files}
            else:
                suite = cls(owner=owner, name=definition.name, version=latest.version + 1 if latest else 1)
            suite.private = private
            suite.description = definition.description
            suite.recovery_threshold = definition.recovery_threshold
            suite.fewshot_seed = definition.fewshot_seed
            suite.tasks = definition.tasks
            suite.suite_file = definition.suite_file
            suite.files = [
                {"name": name, "size": len(data), "sha256": store.put(data)} for name, data in definition.files.items()
            ]
            suite.datasets = definition.datasets
            suite.content_hash = content_hash
            suite.save()
        store.remove(replaced, keep=cls.stored_objects())
        return suite, True

    def delete_unused(self) -> None:
        """Delete this version, unless a job used it, and the stored files no other suite uses."""
        with transaction.atomic():
            locked = Suite.objects.select_for_update().get(pk=self.pk)
            if locked.used:
                raise SuiteInUse(f"{self.reference} was used by a job, so it stays")
            stored = {f["sha256"] for f in locked.files}
            locked.delete()
        store.remove(stored, keep=Suite.stored_objects())

    @classmethod
    def stored_objects(cls) -> set[str]:
        return {f["sha256"] for files in cls.objects.values_list("files", flat=True) for f in files}

    def check_usable_by(self, user) -> None:
        """Refuse a job of `user` on this suite unless they may read every dataset it reads, still
        at the commit it pinned: a suite shared with them does not share its data."""
        for repo_id, pin in self.datasets.items():
            namespace, name = repo_id.split("/")
            repo = Repo.objects.visible_to(user).filter(type=Repo.DATASET, namespace=namespace, name=name).first()
            if repo is None or not repo.commits.filter(sha=pin["commit"]).exists():
                raise SuiteRefused(
                    f"the suite {self.reference} reads the dataset {repo_id}, which you may not read "
                    "(or which no longer holds the commit the suite pinned)"
                )

    def definition(self) -> Definition:
        """The suite as checked at upload, from the stored files (each checked against its sha256)."""
        definition = Definition(
            name=self.name,
            description=self.description,
            recovery_threshold=self.recovery_threshold,
            fewshot_seed=self.fewshot_seed,
            tasks=self.tasks,
            suite_file=self.suite_file,
            files={f["name"]: store.get(f["sha256"]) for f in self.files},
            datasets=self.datasets,
        )
        if definition.content_hash != self.content_hash:
            raise SuiteRefused(f"{self.reference}: its stored definition no longer matches its content hash")
        return definition

    def evaluation(self, fetch_dataset: Callable[[str, dict, Path], None]) -> "evals.Suite":
        """The suite as the evaluation library runs it, from its folder under
        ARTIFACTS_DIR/suites/run/<content hash> (written once, aside, then renamed into place;
        `fetch_dataset` writes each pinned dataset there)."""
        from evals.suites import load_suite

        folder = store.root() / "run" / self.content_hash
        if not (folder / "suite.yaml").is_file():
            folder.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{self.content_hash[:16]}-", dir=folder.parent))
            try:
                materialize(self.definition(), tmp, fetch_dataset, final=folder)
                try:
                    os.rename(tmp, folder)
                except OSError:
                    if not (folder / "suite.yaml").is_file():  # not another stage's copy, put there first
                        raise
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        suite = load_suite(folder / "suite.yaml")
        return dataclasses.replace(
            suite, name=self.full_name, version=str(self.version), content_hash=self.content_hash
        )


def pin_dataset(user, repo_id: str) -> dict:
    """The data files of the dataset repository `repo_id` at the commit its main branch is at,
    if `user` may read it: what a suite reads from it, whatever is committed there later."""
    namespace, name = repo_id.split("/")
    repo = (
        Repo.objects.visible_to(user)
        .filter(type=Repo.DATASET, namespace=namespace, name=name)
        .select_related("head")
        .first()
    )
    if repo is None:
        raise SuiteRefused(f"{repo_id}: no dataset repository of this hub by that name that you may read")
    files = [
        {"path": e.path, "size": e.size, "sha256": e.sha256}
        for e in repo.head.entries.order_by("path")
        if e.path not in NOT_DATA
    ]
    if not files:
        raise SuiteRefused(f"{repo_id}: the dataset repository holds no data files")
    total = sum(f["size"] for f in files)
    if total > settings.SUITE_MAX_DATASET_BYTES:
        raise SuiteRefused(
            f"{repo_id}: {total} bytes of data; a suite's task may read at most {settings.SUITE_MAX_DATASET_BYTES}"
        )
    return {"commit": repo.head.sha, "files": files}


def link_dataset(repo_id: str, pin: dict, folder: Path) -> None:
    """A pinned dataset as links to the hub's own object store: for checking an upload in the web
    process, which reads the store directly (workers download it through the HTTP API)."""
    for f in pin["files"]:
        target = folder / f["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(storage.object_path(f["sha256"]))
