from django.urls import path, re_path, register_converter

from hub.hfapi import views
from hub.hfapi.converters import NameConverter, NamespaceConverter, RevisionConverter
from hub.hfapi.models import Repo

register_converter(NamespaceConverter, "ns")
register_converter(NameConverter, "repo")
register_converter(RevisionConverter, "rev")

REPO = "<ns:namespace>/<repo:name>"


def repo_routes(kind: str, prefix: str) -> list:
    """The routes of one type of repository: `/api/models/...` and `/{id}/...`, or
    `/api/datasets/...` and `/datasets/{id}/...`."""
    api, typed = f"api/{kind}s/{REPO}", {"repo_type": kind}
    return [
        path(api, views.repo_info, typed),
        path(f"{api}/revision/<rev:revision>", views.repo_info, typed),
        path(f"{api}/refs", views.refs, typed),
        path(f"{api}/branch/<str:branch>", views.branch, typed),
        path(f"{api}/tag/<rev:revision>", views.tag, typed),
        path(f"{api}/settings", views.repo_settings, typed),
        path(f"{api}/auth-check", views.auth_check, typed),
        path(f"{api}/safetensors-metadata/<path:path>", views.safetensors_metadata, typed),
        path(f"{api}/auth-check/write", views.auth_check, typed | {"write": True}),
        path(f"{api}/commits/<rev:revision>", views.commits, typed),
        path(f"{api}/tree/<rev:revision>", views.tree, typed),
        path(f"{api}/tree/<rev:revision>/<path:path>", views.tree, typed),
        path(f"{api}/paths-info/<rev:revision>", views.paths_info, typed),
        path(f"{api}/preupload/<rev:revision>", views.preupload, typed),
        path(f"{api}/commit/<rev:revision>", views.commit, typed),
        path(f"{prefix}{REPO}.git/info/lfs/objects/batch", views.lfs_batch, typed),
        path(f"{prefix}{REPO}/resolve/<rev:revision>/<path:path>", views.resolve, typed),
        path(f"{prefix}{REPO}/archive/<rev:revision>.tar", views.archive, typed),
        path(f"{prefix}{REPO}", views.repo_page, typed, name=f"hfapi-{kind}"),
    ]


urlpatterns = [
    path("repos/", views.repo_list, name="repos"),
    path("api/repos/create", views.create_repo),
    path("api/repos/delete", views.delete_repo),
    path("api/repos/move", views.move_repo),
    path("api/models", views.list_models),
    path("api/datasets", views.list_datasets),
    path("api/whoami-v2", views.whoami),
    path("api/settings/repositories", views.user_repos),
    path("api/validate-yaml", views.validate_yaml),
    path("api/lfs/<str:claim>", views.lfs_upload, name="hfapi-lfs-upload"),
    *repo_routes(Repo.DATASET, "datasets/"),
    *repo_routes(Repo.MODEL, ""),
    # the hub's own REST API (api/v1/) answers its own missing paths
    re_path(r"^api/(?!v1/)(?P<rest>.*)$", views.unsupported),
]
