"""The head of a repository a catalog variant was published to: the catalog pins its commit, its
card and SHA256SUMS promise those files to whoever downloads it. Its owner (or any staff member)
committing over it or deleting its weights would leave the catalog pointing at a head without
them; only the hub's publishing user may still write to it."""

import pytest
from django.contrib.auth.models import User
from huggingface_hub import CommitOperationDelete, HfApi
from huggingface_hub.errors import HfHubHTTPError

from hub.api.models import ApiToken
from hub.catalog.models import BaseModel, Publication, Variant
from hub.jobs.models import Recipe
from workers.stages.publish import publisher


def refused(call) -> str:
    with pytest.raises(HfHubHTTPError) as caught:
        call()
    assert caught.value.response.status_code == 409, caught.value
    return str(caught.value)


def test_it_keeps_a_published_head_for_the_publisher_alone(hf_hub, alice, alice_token):
    system = HfApi(endpoint=hf_hub.url, token=ApiToken.issue(publisher(), "publish", ApiToken.Scope.WRITE)[1])
    # what the publish stage does for alice's job: upload as the system user, then record it
    system.create_repo("alice/tiny-w8a8-int8")
    sha = system.upload_file(
        path_or_fileobj=b"\0weights", path_in_repo="model.safetensors", repo_id="alice/tiny-w8a8-int8"
    ).oid
    base = BaseModel.objects.create(name="tiny", status=BaseModel.Status.READY)
    variant = Variant.objects.create(
        base=base, recipe=Recipe.for_preset("w8a8-int8"), name="tiny-w8a8-int8", owner=alice
    )
    Publication.objects.create(
        variant=variant, endpoint=Publication.LOCAL, repo_id="alice/tiny-w8a8-int8", commit_sha=sha
    )

    staff = User.objects.create_user("root", is_staff=True)
    for token in (alice_token, ApiToken.issue(staff, "tests", ApiToken.Scope.WRITE)[1]):
        api = HfApi(endpoint=hf_hub.url, token=token)
        message = refused(
            lambda: api.upload_file(
                path_or_fileobj=b"other", path_in_repo="model.safetensors", repo_id="alice/tiny-w8a8-int8"
            )
        )
        assert "published variant tiny-w8a8-int8" in message
        refused(lambda: api.delete_file("model.safetensors", repo_id="alice/tiny-w8a8-int8"))
        refused(
            lambda: api.create_commit(
                "alice/tiny-w8a8-int8", [CommitOperationDelete("model.safetensors")], commit_message="tidy"
            )
        )
        refused(
            lambda: api.upload_file(path_or_fileobj=b"notes", path_in_repo="NOTES.md", repo_id="alice/tiny-w8a8-int8")
        )
    assert system.model_info("alice/tiny-w8a8-int8").sha == sha

    # publishing again (a retried publish stage) still works
    again = system.upload_file(
        path_or_fileobj=b"\0weights2", path_in_repo="model.safetensors", repo_id="alice/tiny-w8a8-int8"
    )
    assert system.model_info("alice/tiny-w8a8-int8").sha == again.oid != sha
