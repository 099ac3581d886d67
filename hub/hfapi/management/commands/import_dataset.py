from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from hub.catalog.checkpoints import CheckpointError
from hub.catalog.store import check_repo_name
from hub.hfapi.converters import RESERVED
from hub.hfapi.models import Repo, RepoError


class Command(BaseCommand):
    help = (
        "Upload a local folder (data files and an optional README.md) as a dataset repository of this hub, "
        "for datasets.load_dataset and lm-eval tasks through HF_ENDPOINT; into an existing one as a new commit."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("folder", type=Path)
        parser.add_argument("repo_id", help="namespace/name")
        parser.add_argument("--private", action="store_true")
        parser.add_argument("--user", help="the user the repository and commit belong to (default: none)")

    def handle(self, folder: Path, repo_id: str, private: bool, user: str | None, **options) -> None:
        if not folder.is_dir():
            raise CommandError(f"{folder} is not a folder")
        owner = None
        if user:
            owner = get_user_model().objects.filter(username=user).first()
            if owner is None:
                raise CommandError(f"no user named {user!r}")
        try:
            namespace, name = check_repo_name(repo_id).split("/")
            if namespace.lower() in RESERVED:
                raise CommandError(f"{namespace!r} is reserved for the hub's own pages")
            with transaction.atomic():  # a folder refused leaves no empty repository behind
                repo = Repo.objects.filter(type=Repo.DATASET, namespace=namespace, name=name).first()
                repo = repo or Repo.create(namespace, name, owner, private, Repo.DATASET)
                commit = repo.commit_folder(folder.resolve(), owner, f"import {folder.name}")
        except (CheckpointError, RepoError) as exc:
            raise CommandError(str(exc)) from None
        files = commit.entries.count()
        self.stdout.write(f"imported {folder} as dataset {repo.repo_id}@{commit.sha} ({files} files)")
