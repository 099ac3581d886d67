from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from hub.catalog.checkpoints import CheckpointError
from hub.catalog.models import BaseModel
from hub.catalog.store import check_repo_name, hash_into_place, local_models_root


class Command(BaseCommand):
    help = "Import a local checkpoint directory (safetensors, Llama family) as a base model, for offline use."

    def add_arguments(self, parser) -> None:
        parser.add_argument("path", type=Path)
        parser.add_argument("--name", help="catalog name, 'name' or 'owner/name' (default: the folder's name)")
        parser.add_argument("--license", default="")
        parser.add_argument("--private", action="store_true")

    tenths_reported = -1

    def handle(self, path: Path, name: str | None, license: str, private: bool, **options) -> None:
        path = path.resolve()
        try:
            name = check_repo_name(name or path.name)
            existing = BaseModel.objects.filter(name=name).first()
            if existing and existing.source_path != str(path):
                raise CommandError(
                    f"a base model named {name!r} already exists (from {existing.source_path or existing.hf_repo_id})"
                )
            info, dest = hash_into_place(path, local_models_root(name), progress=self.progress)
        except CheckpointError as exc:
            raise CommandError(str(exc)) from None
        if self.stderr.isatty():
            self.stderr.write("")
        base = existing or BaseModel(name=name, source_path=str(path), license=license, private=private)
        base.record_checkpoint(info, dest)
        self.stdout.write(
            f"imported {name}: {info.architecture}, {info.num_parameters:,} parameters, {info.dtype}, "
            f"{len(info.files)} files, {info.size_bytes:,} bytes -> {dest}"
        )

    def progress(self, done: float, message: str) -> None:
        if self.stderr.isatty():
            self.stderr.write(f"\r{done:6.1%} {message}", ending="")
        # Into a log, one line per MiB would be thousands of lines for a large model: tenths only.
        elif int(done * 10) > self.tenths_reported:
            self.tenths_reported = int(done * 10)
            self.stderr.write(f"{done:6.1%} {message}")
