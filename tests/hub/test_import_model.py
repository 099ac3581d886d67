import hashlib
import io

import pytest
from django.core.management import CommandError, call_command

from hub.catalog.models import BaseModel
from tests.helpers import write_tiny_checkpoint


def test_it_imports_a_local_checkpoint(db, stories260k, settings):
    call_command("import_model", str(stories260k))
    base = BaseModel.objects.get(name="stories260k")
    assert base.status == BaseModel.Status.READY
    assert base.architecture == "LlamaForCausalLM" and base.num_parameters > 0
    stored = settings.MODELS_DIR / "local" / "stories260k" / base.resolved_sha
    assert base.local_path == str(stored)
    for entry in base.files:
        assert hashlib.sha256((stored / entry["path"]).read_bytes()).hexdigest() == entry["sha256"]
        assert entry["sha256"] == hashlib.sha256((stories260k / entry["path"]).read_bytes()).hexdigest()


def test_it_imports_the_same_checkpoint_twice_into_one_place(db, stories260k, settings):
    call_command("import_model", str(stories260k), "--name", "me/stories")
    call_command("import_model", str(stories260k), "--name", "me/stories")
    assert BaseModel.objects.count() == 1
    assert len([p for p in (settings.MODELS_DIR / "local" / "me" / "stories").iterdir()]) == 1


@pytest.mark.parametrize("name", ["../evil", "/abs", "a/b/c", "bad name", "x\0y", ".hidden"])
def test_it_refuses_unsafe_names_and_stores_nothing(db, stories260k, settings, name):
    with pytest.raises(CommandError, match="invalid model name"):
        call_command("import_model", str(stories260k), "--name", name)
    assert not BaseModel.objects.exists()
    assert not settings.MODELS_DIR.exists() or not any(settings.MODELS_DIR.rglob("*"))


def test_it_refuses_pickles_and_stores_nothing(db, tmp_path, settings):
    write_tiny_checkpoint(tmp_path / "ckpt")
    (tmp_path / "ckpt" / "pytorch_model.bin").write_bytes(b"\x80\x04.")
    with pytest.raises(CommandError, match="pickle files are refused"):
        call_command("import_model", str(tmp_path / "ckpt"))
    assert not BaseModel.objects.exists()
    assert not settings.MODELS_DIR.exists() or not any(settings.MODELS_DIR.rglob("*.safetensors"))


def test_it_reports_progress_into_a_log_in_tenths(db, tmp_path):
    write_tiny_checkpoint(tmp_path / "big", extra_tensor_elems=12 << 20)  # 48 MiB: 48 chunks hashed
    err = io.StringIO()
    call_command("import_model", str(tmp_path / "big"), stderr=err)
    lines = err.getvalue().splitlines()
    assert "\r" not in err.getvalue() and 2 <= len(lines) <= 11
    assert lines[-1].startswith("100.0% copying 48 / 48 MiB")
