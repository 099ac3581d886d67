from django.urls import path, register_converter

from hub.hfapi import views
from hub.hfapi.converters import NameConverter, NamespaceConverter

register_converter(NamespaceConverter, "ns")
register_converter(NameConverter, "repo")

REPO = "<ns:namespace>/<repo:name>"

urlpatterns = [
    path("repos/", views.repo_list, name="repos"),
    path("api/repos/create", views.create_repo),
    path("api/repos/delete", views.delete_repo),
    path("api/models", views.list_models),
    path("api/whoami-v2", views.whoami),
    path("api/validate-yaml", views.validate_yaml),
    path("api/lfs/<str:claim>", views.lfs_upload, name="hfapi-lfs-upload"),
    path(f"api/models/{REPO}", views.model_info),
    path(f"api/models/{REPO}/revision/<str:revision>", views.model_info),
    path(f"api/models/{REPO}/refs", views.refs),
    path(f"api/models/{REPO}/settings", views.repo_settings),
    path(f"api/models/{REPO}/commits/<str:revision>", views.commits),
    path(f"api/models/{REPO}/tree/<str:revision>", views.tree),
    path(f"api/models/{REPO}/tree/<str:revision>/<path:path>", views.tree),
    path(f"api/models/{REPO}/preupload/<str:revision>", views.preupload),
    path(f"api/models/{REPO}/commit/<str:revision>", views.commit),
    path(f"{REPO}.git/info/lfs/objects/batch", views.lfs_batch),
    path(f"{REPO}/resolve/<str:revision>/<path:path>", views.resolve, name="hfapi-resolve"),
    path(f"{REPO}/archive/<str:revision>.tar", views.archive, name="hfapi-archive"),
    path(REPO, views.repo_page, name="hfapi-repo"),
]
