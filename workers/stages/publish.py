"""publish: write a variant's repository (the weights exactly as measured, config, tokenizer,
recipe, evaluation results, benchmark JSON and a model card) and upload it with huggingface_hub
to this hub, then to each external target the job names. This hub is reached through its own
HTTP API, the same code path as any other Hub endpoint."""

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model

from hub.api.models import ApiToken
from hub.catalog import cards
from hub.catalog.checkpoints import CheckpointError, sha256_file
from hub.catalog.models import Publication, Variant
from hub.catalog.store import check_repo_name, verify_checkpoint
from hub.hfapi.converters import RESERVED
from hub.hfapi.models import Repo
from hub.jobs.targets import Target, TargetRefused, resolve_target, token_for
from workers.runner import StageError, StageResult


def publish(stage, ctx) -> StageResult:
    job, recipe = stage.job, stage.recipe
    variant = (
        Variant.objects.filter(job=job, recipe=recipe)
        .select_related("base", "recipe", "job__owner")
        .order_by("-created_at")
        .first()
    )
    if variant is None or not variant.local_path:
        raise StageError(f"job {job.pk} has no {recipe} variant to publish (did compress run?)")
    folder = Path(variant.local_path)
    measured = cards.measured_files(variant)
    ctx.logger.info("verifying %s against the sha256 recorded when it was made", folder)
    try:
        verify_checkpoint(folder, measured, lambda done, message: ctx.progress(0.1 * done, message))
    except CheckpointError as exc:
        raise StageError(
            f"{variant.name}: {exc}; refusing to publish files that differ from what was measured"
        ) from None
    targets = external_targets(job.publish_targets, job.owner)
    repo_id = local_repo_id(variant)
    endpoint = settings.PUBLISH_LOCAL_ENDPOINT.rstrip("/")
    card_files = write_repo_files(variant, folder, repo_id, endpoint)
    files = sorted({f["path"]: f for f in [*measured, *card_files]}.values(), key=lambda f: f["path"])

    publications = []
    message = f"{variant.name}: {variant.scheme or recipe.name} from {variant.base.name} (job {job.pk})"
    user = publisher()
    token, plaintext = ApiToken.issue(user, f"publish stage {stage.pk}", ApiToken.Scope.WRITE)
    try:
        ctx.progress(0.2, f"uploading to this hub as {repo_id}")
        with hub_client_settings():
            sha = upload(endpoint, plaintext, repo_id, folder, files, variant.private, message, tag=f"job-{job.pk}")
    finally:
        token.revoke()
    publications.append(
        Publication(
            variant=variant,
            endpoint=Publication.LOCAL,
            repo_id=repo_id,
            commit_sha=sha,
            url=f"{settings.SITE_URL.rstrip('/')}/{repo_id}",
        )
    )
    ctx.logger.info("published %s@%s on this hub", repo_id, sha)
    if targets and variant.gate == Variant.Gate.FAILED:
        # this hub keeps and shows every variant; a failed one goes to no other hub (an inconclusive
        # one does, its card saying "inconclusive at this sample size")
        ctx.logger.info(
            "not publishing to %s: %s failed its validation gate", ", ".join(t.repo_id for t in targets), variant.name
        )
        targets = []
    for i, target in enumerate(targets):
        if ctx.cancelled():
            raise StageError("cancelled")
        ctx.progress(0.2 + 0.8 * (i + 1) / (len(targets) + 1), f"uploading to {target.endpoint} as {target.repo_id}")
        sha = upload(
            target.endpoint, token_for(target, job.owner), target.repo_id, folder, files, variant.private, message
        )
        publications.append(
            Publication(
                variant=variant,
                endpoint=target.endpoint,
                repo_id=target.repo_id,
                commit_sha=sha,
                url=f"{target.endpoint}/{target.repo_id}",
            )
        )
        ctx.logger.info("published %s@%s on %s", target.repo_id, sha, target.endpoint)

    def record() -> None:
        Variant.objects.filter(pk=variant.pk).update(files=files)
        Publication.objects.bulk_create(publications)

    import huggingface_hub

    return StageResult(
        outputs={
            "publications": [
                {"endpoint": p.endpoint, "repo_id": p.repo_id, "commit": p.commit_sha, "url": p.url}
                for p in publications
            ]
        },
        record=record,
        versions={"publish:huggingface_hub": huggingface_hub.__version__},
    )


def external_targets(lines: list[str], owner) -> list[Target]:
    """The job's targets, checked again as at submission (the operator's settings may have
    changed since); refuses before anything is uploaded when one is no longer allowed or has no
    token."""
    try:
        targets = [resolve_target(line, owner) for line in lines]
    except TargetRefused as exc:
        raise StageError(f"publish target {exc}") from None
    home = [t for t in targets if t.hubs_token]
    if home and not settings.PUBLISH_HF_TOKEN:
        raise StageError(
            f"the job asks to publish to {', '.join(f'{t.endpoint} {t.repo_id}' for t in home)}, but no token is configured: "
            "set HUB_PUBLISH_HF_TOKEN (a write token for that hub)"
        )
    return targets


def local_repo_id(variant: Variant) -> str:
    """`{owner}/{variant}` on this hub (or PUBLISH_NAMESPACE for jobs without an owner); a name
    another variant already took gets a numbered suffix."""
    owner = variant.job.owner if variant.job else None
    namespace = owner.username if owner and owner.username.lower() not in RESERVED else settings.PUBLISH_NAMESPACE
    try:
        check_repo_name(f"{namespace}/x")
    except CheckpointError:
        namespace = settings.PUBLISH_NAMESPACE
    short = variant.name.split("/")[-1]
    name, n = short, 1
    while (
        Repo.objects.filter(type=Repo.MODEL, namespace=namespace, name=name).exists()
        and not Publication.objects.filter(
            variant=variant, endpoint=Publication.LOCAL, repo_id=f"{namespace}/{name}"
        ).exists()
    ):
        n += 1
        name = f"{short}-{n}"
    return f"{namespace}/{name}"


def publisher():
    """The system user that uploads into this hub; staff, so it may write in any namespace,
    and without a password, so nobody signs in as it."""
    user, created = get_user_model().objects.get_or_create(
        username=settings.PUBLISH_USER, defaults={"is_staff": True, "is_active": True}
    )
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    elif not (user.is_staff and user.is_active):
        raise StageError(f"the publishing user {user.username!r} must be active staff (HUB_PUBLISH_USER)")
    return user


@contextlib.contextmanager
def hub_client_settings() -> Iterator[None]:
    """This hub speaks LFS (no Xet), and HF_HUB_OFFLINE, which keeps workers off huggingface.co,
    must not keep them off this hub itself."""
    from huggingface_hub import constants

    saved = constants.HF_HUB_DISABLE_XET, constants.HF_HUB_OFFLINE
    constants.HF_HUB_DISABLE_XET, constants.HF_HUB_OFFLINE = True, False
    try:
        yield
    finally:
        constants.HF_HUB_DISABLE_XET, constants.HF_HUB_OFFLINE = saved


def upload(
    endpoint: str,
    token: str,
    repo_id: str,
    folder: Path,
    files: list[dict],
    private: bool,
    message: str,
    tag: str = "",
) -> str:
    """Upload `files` of `folder` as one commit, tagged `tag` if given; returns its sha once
    every file in it is checked to be the one recorded here."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled
    from huggingface_hub.hf_api import RepoFile

    from hub.hfapi.storage import git_blob_id

    api = HfApi(endpoint=endpoint, token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.upload_folder(
            folder_path=folder,
            repo_id=repo_id,
            commit_message=message[:200],
            allow_patterns=[f["path"] for f in files],
        )
        remote = {
            f.path: f for f in api.list_repo_tree(repo_id, revision=info.oid, recursive=True) if isinstance(f, RepoFile)
        }
    except OfflineModeIsEnabled:
        raise StageError(f"cannot publish to {endpoint}: HF_HUB_OFFLINE is set on this worker") from None
    except (HfHubHTTPError, OSError) as exc:
        raise StageError(f"publishing {repo_id} to {endpoint} failed: {exc}") from None
    for entry in files:
        got = remote.get(entry["path"])
        if got is None:
            raise StageError(f"{endpoint}/{repo_id}@{info.oid}: {entry['path']} is missing after the upload")
        if got.lfs is not None:
            same = got.lfs.sha256 == entry["sha256"]
        else:
            same = got.blob_id == git_blob_id((folder / entry["path"]).read_bytes())
        if not same or got.size != entry["size"]:
            raise StageError(f"{endpoint}/{repo_id}@{info.oid}: {entry['path']} differs from the file recorded here")
    if tag:
        try:
            if any(t.name == tag for t in api.list_repo_refs(repo_id).tags):
                api.delete_tag(repo_id, tag=tag)  # a retried publication: its tag follows the new commit
            api.create_tag(repo_id, tag=tag, revision=info.oid, tag_message=message[:200])
        except HfHubHTTPError as exc:
            raise StageError(f"tagging {repo_id}@{info.oid} as {tag} on {endpoint} failed: {exc}") from None
    return info.oid


# -- the repository's files beside the weights ------------------------------------------------


def write_repo_files(variant: Variant, folder: Path, repo_id: str, endpoint: str) -> list[dict]:
    """Write what the repository says about the variant (hub.catalog.cards) into its folder, each
    file whole, by rename, as the bytes its SHA256SUMS names; returns their {path, size, sha256}."""
    written = []
    for path, data in cards.repo_files(variant, repo_id, endpoint).items():
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)
        written.append({"path": path, "size": target.stat().st_size, "sha256": sha256_file(target)})
    return written
