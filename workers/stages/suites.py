"""A job's evaluation suite on a worker: a built-in one by name, or the user suite version the job
names (hub.suites), written out with the dataset repositories it reads, downloaded through this
hub's own Hugging Face API at the commits the suite pinned, so that lm-eval reads them from disk
and never reaches the network. The submitter's right to read that data was checked when the job
was submitted; the download goes as the hub's publishing user, as publish uploads."""

import shutil
from pathlib import Path

from django.conf import settings

from hub.api.models import ApiToken
from hub.catalog.checkpoints import sha256_file
from hub.suites.definition import SuiteRefused
from workers.runner import StageError
from workers.stages.publish import hub_client_settings, publisher


def evaluation_suite(job):
    from evals import get_suite

    if not job.user_suite_id:
        return get_suite(job.suite)
    try:
        return job.user_suite.evaluation(download_dataset)
    except (SuiteRefused, OSError) as exc:
        raise StageError(f"suite {job.suite}: {exc}") from None


def download_dataset(repo_id: str, pin: dict, folder: Path) -> None:
    """The pinned files of a dataset repository into `folder`, each checked against the sha256
    the suite recorded."""
    import httpx2
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError

    endpoint = settings.PUBLISH_LOCAL_ENDPOINT.rstrip("/")
    token, plaintext = ApiToken.issue(publisher(), f"suite data {repo_id}")
    try:
        with hub_client_settings():
            for f in pin["files"]:
                hf_hub_download(
                    repo_id,
                    f["path"],
                    repo_type="dataset",
                    revision=pin["commit"],
                    local_dir=folder,
                    endpoint=endpoint,
                    token=plaintext,
                )
    except (HfHubHTTPError, OSError, httpx2.HTTPError) as exc:
        raise StageError(
            f"the dataset {repo_id}@{pin['commit'][:10]} cannot be downloaded from {endpoint}: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    finally:
        token.revoke()
    shutil.rmtree(folder / ".cache", ignore_errors=True)
    for f in pin["files"]:
        if sha256_file(folder / f["path"]) != f["sha256"]:
            raise StageError(
                f"the dataset {repo_id}@{pin['commit'][:10]}: {f['path']} differs from what the suite pinned"
            )
