"""fetch: make the base model's snapshot present and verified on this hub's disk."""

import shutil
import tempfile
from functools import partial
from pathlib import Path

from django.conf import settings

from hub.api.models import ApiToken
from hub.catalog import upstream
from hub.catalog.checkpoints import PICKLE_SUFFIXES, CheckpointError, check_config
from hub.catalog.models import BaseModel
from hub.catalog.store import hash_into_place, hf_models_root, local_models_root, verify_checkpoint
from workers.runner import StageError, StageResult
from workers.stages.publish import hub_client_settings

# What a Llama-family snapshot needs; pickled weights and remote code are never downloaded.
WANTED_SUFFIXES = (".safetensors", ".json", ".model", ".txt", ".md", ".jinja", ".tiktoken")


def fetch(stage, ctx) -> StageResult:
    base: BaseModel = stage.job.base_model
    try:
        if base.status == BaseModel.Status.READY and base.local_path:
            ctx.logger.info("verifying the stored snapshot %s", base.local_path)
            verify_checkpoint(Path(base.local_path), base.files, ctx.progress)
            return StageResult(outputs=_outputs(base), record=None)
        if base.source_path:
            ctx.logger.info("importing %s", Path(base.source_path).name)
            info, path = hash_into_place(
                Path(base.source_path), local_models_root(base.name), ctx.progress, ctx.cancelled
            )
        elif base.hf_repo_id and base.on_this_hub:
            info, path = _download_from_this_hub(base, stage, ctx)
        elif base.hf_repo_id:
            info, path = _download(base, ctx, settings.HF_ENDPOINT, upstream.token_for(base.hf_repo_id))
        else:
            raise StageError(f"base model {base.name} has neither a Hub repo id nor a local source")
    except CheckpointError as exc:
        raise StageError(f"{base.name}: {exc}") from None

    def record() -> None:
        base.record_checkpoint(info, path)

    return StageResult(outputs={**_outputs(base), "local_path": str(path), "files": len(info.files)}, record=record)


def _outputs(base: BaseModel) -> dict:
    return {"base_model": base.pk, "resolved_sha": base.resolved_sha, "local_path": base.local_path}


def _download_from_this_hub(base: BaseModel, stage, ctx) -> tuple:
    """Through the hub's own HTTP API, as the job's owner: a private repository downloads only
    for a job of someone who may read it, and every check of a download from the Hub applies."""
    owner = stage.job.owner
    token, plaintext = ApiToken.issue(owner, f"fetch stage {stage.pk}") if owner else (None, None)
    try:
        with hub_client_settings():
            return _download(base, ctx, settings.PUBLISH_LOCAL_ENDPOINT.rstrip("/"), plaintext)
    finally:
        if token:
            token.revoke()


def _download(base: BaseModel, ctx, endpoint: str, token: str | None) -> tuple:
    import httpx2
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    api = HfApi(endpoint=endpoint, token=token)
    revision = base.revision or "main"
    try:
        info = api.model_info(base.hf_repo_id, revision=revision, files_metadata=True)
    except OfflineModeIsEnabled:
        raise StageError(
            f"{base.hf_repo_id}: the hub is offline (HF_HUB_OFFLINE); import the model with "
            "`manage.py import_model PATH` instead"
        ) from None
    except GatedRepoError:
        hint = upstream.refusal_hint(base.hf_repo_id) if not base.on_this_hub else ""
        raise StageError(
            f"{base.hf_repo_id} is gated: its terms must be accepted on the Hub by the account of the token used{hint}"
        ) from None
    except RepositoryNotFoundError:
        hint = upstream.refusal_hint(base.hf_repo_id) if not base.on_this_hub else ""
        raise StageError(f"{base.hf_repo_id}: no such repository (or it is private){hint}") from None
    except RevisionNotFoundError:
        raise StageError(f"{base.hf_repo_id}: no revision {revision!r}") from None
    except HfHubHTTPError as exc:
        raise StageError(f"{base.hf_repo_id}: the Hub answered {exc}") from None
    except httpx2.HTTPError as exc:  # huggingface_hub's HTTP client: connection errors come through as they are
        raise StageError(f"{base.hf_repo_id}: cannot reach {endpoint} ({type(exc).__name__}: {exc})") from None

    siblings = {s.rfilename: s.size or 0 for s in info.siblings or []}
    if not any(name.endswith(".safetensors") for name in siblings):
        pickles = [n for n in siblings if n.lower().endswith(PICKLE_SUFFIXES)]
        if pickles:
            raise StageError(
                f"{base.hf_repo_id}@{info.sha[:10]} has only pickle weights ({', '.join(pickles[:3])}): loading them "
                "can run arbitrary code; the hub accepts safetensors weights only"
            )
        raise StageError(f"{base.hf_repo_id}@{info.sha[:10]} has no *.safetensors weights")
    unsafe = [n for n in siblings if n.startswith("/") or ".." in n.split("/") or "\0" in n]
    if unsafe:
        raise StageError(f"{base.hf_repo_id}@{info.sha[:10]} lists unsafe file paths: {unsafe[:3]}")
    wanted = sorted(n for n in siblings if n.endswith(WANTED_SUFFIXES))
    if "config.json" not in wanted:
        raise StageError(f"{base.hf_repo_id}@{info.sha[:10]} has no config.json")

    dest_root = hf_models_root(base.hf_repo_id)
    dest_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=dest_root))
    try:
        # The architecture is checked before any weight is downloaded.
        download = partial(
            hf_hub_download,
            base.hf_repo_id,
            revision=info.sha,
            local_dir=tmp,
            endpoint=endpoint,
            token=token,
        )
        download("config.json")
        try:
            check_config(tmp / "config.json")
        except CheckpointError as exc:
            raise StageError(f"{base.hf_repo_id}@{info.sha[:10]}: {exc}") from None
        total = sum(siblings[n] for n in wanted) or 1
        done = 0
        for name in wanted:
            if ctx.cancelled():
                raise StageError("cancelled")
            ctx.progress(0.9 * done / total, f"downloading {name}")
            download(name)
            done += siblings[name]
        shutil.rmtree(tmp / ".cache", ignore_errors=True)
        checkpoint, path = hash_into_place(
            tmp, dest_root, lambda d, m: ctx.progress(0.9 + 0.1 * d, m), ctx.cancelled, copy=False
        )
        base.resolved_sha = info.sha
        return checkpoint, path
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
