"""The Hugging Face Hub HTTP API over the hub's own model and dataset repositories, as
`huggingface_hub`, transformers, datasets and vLLM use it with HF_ENDPOINT pointing here (uploads need HF_HUB_DISABLE_XET=1:
this hub speaks LFS, not Xet). Shapes follow the Hub's own answers as the client parses them; errors
carry X-Error-Code so clients raise RepositoryNotFound / RevisionNotFound / EntryNotFound."""

import base64
import binascii
import hashlib
import json
import math
import re
import tarfile
import unicodedata
from collections.abc import Callable, Iterator
from functools import wraps
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.core import signing
from django.core.paginator import Paginator
from django.db import IntegrityError
from django.db.models import Count, Sum
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import content_disposition_header, urlencode
from django.views.decorators.csrf import csrf_exempt

from hub import parsing
from hub.api.models import ApiToken, bearer_token
from hub.catalog.checkpoints import CheckpointError, read_safetensors_header
from hub.catalog.models import Publication
from hub.catalog.store import check_repo_name
from hub.hfapi import card, storage
from hub.hfapi.converters import RESERVED, own_namespace
from hub.hfapi.models import MAIN, Commit, Entry, FileSpec, LfsObject, Ref, Repo, RepoError, check_path, wants_lfs
from hub.userfiles import confine, passive_type

UPLOAD_SALT = "hub.hfapi.lfs-upload"
TREE_PAGE = 1000
CARD_LIMIT = 1 << 20
RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def error(message: str, status: int, code: str = "", commit: str = "") -> JsonResponse:
    response = JsonResponse({"error": message}, status=status)
    # a header carries printable ASCII only: a revision or path a client sent may hold anything
    header = message.encode("ascii", "backslashreplace").decode()
    response["X-Error-Message"] = "".join(c if c.isprintable() else " " for c in header)[:500]
    if code:
        response["X-Error-Code"] = code
    if commit:
        response["X-Repo-Commit"] = commit
    return response


def api_view(*methods: str) -> Callable:
    """Token-authenticated (not session) endpoints: no CSRF; refusals become Hub-style errors."""

    def decorate(view: Callable) -> Callable:
        @csrf_exempt
        @wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if request.method not in methods:
                return error(f"method {request.method} not allowed", 405)
            try:
                return view(request, *args, **kwargs)
            except RepoError as exc:
                return error(str(exc), exc.status, exc.code, exc.commit)
            except (storage.StorageError, CheckpointError) as exc:
                return error(str(exc), 400)

        return wrapper

    return decorate


# -- who is asking ---------------------------------------------------------------------------


def authenticate(request: HttpRequest) -> tuple[object | None, ApiToken | None]:
    """(user, token): a bearer token if the request has one (it must be valid), else the
    signed-in user of the web session, else nobody."""
    if request.headers.get("Authorization"):
        token = bearer_token(request)
        if token is None:
            raise RepoError("Invalid credentials in Authorization header", 401)
        return token.user, token
    if request.user.is_authenticated:
        return request.user, None
    return None, None


def find_repo(
    request: HttpRequest, repo_type: str, namespace: str, name: str
) -> tuple[Repo, object | None, ApiToken | None]:
    user, token = authenticate(request)
    return readable_repo(user, repo_type, namespace, name), user, token


def readable_repo(user, repo_type: str, namespace: str, name: str) -> Repo:
    repo = (
        Repo.objects.visible_to(user)
        .filter(type=repo_type, namespace=namespace, name=name)
        .select_related("head")
        .first()
    )
    if repo is None:  # a private repository is indistinguishable from a missing one to those who may not read it
        raise RepoError(f"Repository not found: {namespace}/{name}", 404, "RepoNotFound")
    return repo


def write_access(token: ApiToken | None) -> ApiToken:
    if token is None:
        raise RepoError("writing needs a token with the write scope (Authorization: Bearer ...)", 401)
    if not token.can_write:
        raise RepoError("this token is read-only: writing needs a token with the write scope", 403)
    return token


def owned_repo(
    user, token: ApiToken | None, repo_type: str, namespace: str, name: str, doing: str = "write to"
) -> Repo:
    repo = readable_repo(user, repo_type, namespace, name)
    write_access(token)
    if not repo.owned_by(user):
        raise RepoError(f"{user.username} may not {doing} {repo.repo_id}", 403)
    return repo


def writable_repo(
    request: HttpRequest, repo_type: str, namespace: str, name: str, revision: str
) -> tuple[Repo, object, str, Commit]:
    """(repo, user, branch, the branch's head) for a change to `revision`, which must be a branch."""
    user, token = authenticate(request)
    repo = owned_repo(user, token, repo_type, namespace, name)
    refuse_unless_publisher(repo, user)
    if request.GET.get("create_pr") in ("1", "true", "True"):
        raise RepoError("pull requests are not supported by this hub: commit to a branch instead", 400)
    branch = revision.removeprefix("refs/heads/")
    return repo, user, branch, repo.branch_head(branch)


def refuse_if_cut_short(request: HttpRequest, received: int, consequence: str) -> None:
    """Servers hand a view what arrived when the client goes away before its Content-Length:
    whole lines or a whole JSON value can still be in it, so what is missing would go unnoticed."""
    declared = request.META.get("CONTENT_LENGTH") or ""
    if declared.isdigit() and received < int(declared):
        raise RepoError(
            f"the request body ended after {received} of the {declared} bytes its Content-Length "
            f"declares: {consequence}"
        )


def json_body(request: HttpRequest) -> dict:
    refuse_if_cut_short(request, len(request.body), "nothing was done")
    try:
        data = parsing.load_json(request.body, "the request body", max_chars=None)
    except parsing.ParseError as exc:
        raise RepoError(str(exc)) from None
    if not isinstance(data, dict):
        raise RepoError("the request body must be a JSON object")
    return data


def site_url(request: HttpRequest, path: str = "") -> str:
    """An absolute URL of this hub, on its own address: SITE_URL, or PUBLISH_LOCAL_ENDPOINT when
    the request came there (workers may reach the hub at an internal address, and must upload
    there). Never on the request's Host otherwise, which the client writes: where several hosts
    are allowed, it would send uploads and tokens wherever that header said."""
    host = request.get_host().lower()
    own = next(
        (url for url in (settings.SITE_URL, settings.PUBLISH_LOCAL_ENDPOINT) if urlsplit(url).netloc.lower() == host),
        settings.SITE_URL,
    )
    return own.rstrip("/") + path


def hub_time(dt) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def cursor(request: HttpRequest) -> int:
    """Where this page of a list starts (a `page` link's `cursor`)."""
    value = request.GET.get("cursor", "0")
    return int(value) if value.isdigit() else 0


def page(request: HttpRequest, items: list, next_cursor: int | None) -> JsonResponse:
    """One page of a list; the client follows `Link: <...>; rel="next"` to the rest."""
    response = JsonResponse(items, safe=False)
    if next_cursor is not None:
        query = request.GET.copy()
        query["cursor"] = str(next_cursor)
        response["Link"] = f'<{site_url(request, request.path)}?{query.urlencode()}>; rel="next"'
    return response


# -- repositories ----------------------------------------------------------------------------


def repo_type_of(value: object) -> str:
    """A request's repository type: model (the default) or dataset."""
    if value in (None, Repo.MODEL, Repo.DATASET):
        return value or Repo.MODEL
    raise RepoError(f"this hub keeps model and dataset repositories, not {value!r}", 400, "RepoTypeNotSupported")


def named_repo(body: dict, user) -> tuple[str, str, str]:
    """(type, namespace, name) of a create or delete request: `organization`, or the user's own name."""
    name, namespace = body.get("name"), body.get("organization") or user.username
    if not isinstance(name, str) or not isinstance(namespace, str):
        raise RepoError("'name' (and 'organization', when given) must be strings")
    return repo_type_of(body.get("type")), namespace, name


def check_new_repo(user, namespace: str, name: str) -> None:
    """A repository `user` may create under that id (existing or not)."""
    check_repo_name(f"{namespace}/{name}")
    if namespace.lower() in RESERVED:
        # the default superuser, `admin`, meets this on its first upload
        hint = (
            f"; as staff you may use any other namespace, such as {own_namespace(user)}/{name}" if user.is_staff else ""
        )
        raise RepoError(f"{namespace!r} is reserved for the hub's own pages{hint}")
    if not (user.is_staff or namespace == user.username):
        raise RepoError(f"you may create repositories only under your own name, {user.username}", 403)


@api_view("POST")
def create_repo(request: HttpRequest) -> HttpResponse:
    user, token = authenticate(request)
    write_access(token)
    body = json_body(request)
    repo_type, namespace, name = named_repo(body, user)
    check_new_repo(user, namespace, name)
    url = site_url(request, f"/{'datasets/' if repo_type == Repo.DATASET else ''}{namespace}/{name}")
    private = body.get("visibility") == "private" or body.get("private") is True
    try:
        if Repo.objects.filter(type=repo_type, namespace=namespace, name=name).exists():
            raise IntegrityError
        repo = Repo.create(namespace, name, user, private, repo_type)
    except IntegrityError:
        response = error(f"You already created this {repo_type} repo: {namespace}/{name}", 409)
        response.content = json.dumps({"error": f"You already created this {repo_type} repo", "url": url}).encode()
        return response
    return JsonResponse({"url": url, "name": repo.repo_id, "id": str(repo.pk)})


@api_view("DELETE")
def delete_repo(request: HttpRequest) -> HttpResponse:
    """`HfApi().delete_repo`, for its owner (or staff). A repository a catalog variant was
    published to is kept: its page, card and checksums promise that download to users."""
    user, token = authenticate(request)
    write_access(token)  # before the body's namespace defaults to the caller's name
    repo = owned_repo(user, token, *named_repo(json_body(request), user), "delete")
    refuse_if_published(repo, "it stays")
    repo.delete_with_contents()
    return HttpResponse(status=200)


@api_view("POST")
def move_repo(request: HttpRequest) -> HttpResponse:
    """`HfApi().move_repo`: a new id for a repository, its history and refs unchanged. Moving
    into another namespace needs the right to create there."""
    user, token = authenticate(request)
    write_access(token)
    body = json_body(request)
    repo_type = repo_type_of(body.get("type"))
    ids = [body.get("fromRepo"), body.get("toRepo")]
    if not all(isinstance(i, str) and i.count("/") == 1 for i in ids):
        raise RepoError("'fromRepo' and 'toRepo' must be repository ids, namespace/name")
    (old_namespace, old_name), (namespace, name) = (i.split("/") for i in ids)
    repo = owned_repo(user, token, repo_type, old_namespace, old_name, "move")
    refuse_if_published(repo, "it keeps its id")
    check_new_repo(user, namespace, name)
    if Repo.objects.filter(type=repo_type, namespace=namespace, name=name).exists():
        raise RepoError(f"{namespace}/{name} already exists", 409)
    repo.namespace, repo.name = namespace, name
    try:
        repo.save(update_fields=["namespace", "name", "updated_at"])
    except IntegrityError:
        raise RepoError(f"{namespace}/{name} already exists", 409) from None
    return HttpResponse(status=200)


def refuse_if_published(repo: Repo, consequence: str) -> None:
    """The catalog links to the repositories its variants were published to and sets their visibility."""
    if repo.type != Repo.MODEL:
        return
    published = Publication.objects.filter(endpoint=Publication.LOCAL, repo_id=repo.repo_id).select_related("variant")
    if names := sorted({p.variant.name for p in published}):
        raise RepoError(
            f"{repo.repo_id} holds the published variant {', '.join(names)}: the catalog links to it, so {consequence}",
            409,
        )


def refuse_unless_publisher(repo: Repo, user) -> None:
    """The catalog pins the commit it published and promises its files: only the publish stage,
    as PUBLISH_USER, moves the head of such a repository (publishing again), not its owner."""
    if user.username != settings.PUBLISH_USER:
        refuse_if_published(repo, "only the hub's publish stage may change its files")


@api_view("PUT")
def repo_settings(request: HttpRequest, repo_type: str, namespace: str, name: str) -> HttpResponse:
    """`update_repo_settings`: visibility, for the owner. Gating is not a feature of this hub."""
    repo = owned_repo(*authenticate(request), repo_type, namespace, name, "change the settings of")
    body = json_body(request)
    if body.get("gated") not in (None, False):
        raise RepoError("gated repositories are not supported by this hub: make it private instead")
    visibility = body.get("visibility", {True: "private", False: "public"}.get(body.get("private")))
    if visibility not in ("private", "public", None):
        raise RepoError(f"visibility must be 'private' or 'public', not {visibility!r}")
    if visibility and (visibility == "private") != repo.private:
        refuse_if_published(repo, "its visibility follows the variant's")
        repo.private = visibility == "private"
        repo.save(update_fields=["private"])
    return JsonResponse({"private": repo.private})


@api_view("GET")
def whoami(request: HttpRequest) -> HttpResponse:
    user, token = authenticate(request)
    if token is None:
        raise RepoError("Invalid credentials in Authorization header", 401)
    return JsonResponse(
        {
            "type": "user",
            "id": str(user.pk),
            "name": user.username,
            "fullname": user.get_full_name() or user.username,
            "email": user.email or None,
            "isPro": False,
            "orgs": [],
            "auth": {
                "type": "access_token",
                "accessToken": {"displayName": token.name, "role": "write" if token.can_write else "read"},
            },
        }
    )


@api_view("GET")
def user_repos(request: HttpRequest) -> HttpResponse:
    """`list_user_repos` (`hf repos ls`): the caller's own repositories, with the bytes each keeps."""
    user, token = authenticate(request)
    if token is None:
        raise RepoError("listing your repositories needs a token (Authorization: Bearer ...)", 401)
    repos = Repo.objects.filter(namespace=user.username).order_by("-updated_at", "type", "name")
    used = repos.storage()
    total = sum(used.values()) or 1
    items = [
        {
            "id": repo.repo_id,
            "type": repo.type,
            "updatedAt": hub_time(repo.updated_at),
            "visibility": "private" if repo.private else "public",
            "storage": used.get(repo.pk, 0),
            "storagePercent": round(100 * used.get(repo.pk, 0) / total, 2),
        }
        for repo in repos
    ]
    return page(request, items, None)


@api_view("GET")
def auth_check(request: HttpRequest, repo_type: str, namespace: str, name: str, write: bool = False) -> HttpResponse:
    """`auth_check`: whether the caller may read the repository, or with `/write` change it."""
    user, token = authenticate(request)
    repo = (
        owned_repo(user, token, repo_type, namespace, name)
        if write
        else readable_repo(user, repo_type, namespace, name)
    )
    return JsonResponse({"id": repo.repo_id, "access": "write" if write else "read"})


@api_view("POST")
def validate_yaml(request: HttpRequest) -> HttpResponse:
    content = json_body(request).get("content")
    if not isinstance(content, str):
        raise RepoError("'content' must be the README.md text")
    errors, warnings = card.validate(content)
    return JsonResponse(
        {"errors": [{"message": m} for m in errors], "warnings": [{"message": m} for m in warnings]},
        status=400 if errors else 200,
    )


def sibling(entry: Entry) -> dict:
    item = {"rfilename": entry.path, "size": entry.size, "blobId": entry.blob_id}
    if entry.lfs:
        item["lfs"] = {"sha256": entry.sha256, "size": entry.size, "pointerSize": entry.pointer_size}
    return item


def read_card(entries: list[Entry]) -> str:
    readme = next((e for e in entries if e.path == "README.md"), None)
    if readme is None or readme.size > CARD_LIMIT:
        return ""
    return storage.object_path(readme.sha256).read_text(errors="replace")


def safetensors_parameters(entries: list[Entry]) -> dict | None:
    """Parameter counts by dtype over the repository's safetensors files, from their headers
    (checked as at import); None when it has none."""
    counts: dict[str, int] = {}
    files = [e for e in entries if e.path.endswith(".safetensors")]
    for entry in files:
        try:
            header = read_safetensors_header(storage.object_path(entry.sha256))
        except (CheckpointError, OSError):
            return None  # not a readable safetensors file: no counts rather than wrong ones
        for tensor, spec in header.items():
            if tensor != "__metadata__":
                counts[spec["dtype"]] = counts.get(spec["dtype"], 0) + math.prod(spec["shape"])
    return {"parameters": counts, "total": sum(counts.values())} if files else None


@api_view("GET")
def safetensors_metadata(request: HttpRequest, repo_type: str, namespace: str, name: str, path: str) -> HttpResponse:
    """`get_sharded_safetensors_metadata`: a safetensors index of main and the header of every
    shard it names, in one answer."""
    repo, _, _ = find_repo(request, repo_type, namespace, name)
    entries = {e.path: e for e in repo.head.entries.all()}
    index_entry = entries.get(check_path(path))
    if index_entry is None or not path.endswith(".safetensors.index.json"):
        raise RepoError(f"{path} is not a safetensors index of {repo.repo_id} at main", 404, "EntryNotFound")
    try:
        index = parsing.load_json(storage.object_path(index_entry.sha256).read_bytes(), path)
    except parsing.ParseError as exc:
        raise RepoError(str(exc)) from None
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise RepoError(f"{path} has no weight_map of tensor names to shard files")
    folder = path.rpartition("/")[0]
    headers = {}
    for shard in sorted(set(weight_map.values())):
        entry = entries.get(check_path(f"{folder}/{shard}" if folder else shard))
        if entry is None:
            raise RepoError(f"{path} names the shard {shard}, which is not in {repo.repo_id}", 404, "EntryNotFound")
        try:
            headers[shard] = read_safetensors_header(storage.object_path(entry.sha256))
        except CheckpointError as exc:
            raise RepoError(f"{shard}: {str(exc).partition(': ')[2] or exc}") from None
    return JsonResponse({"index": {k: v for k, v in index.items() if k != "weight_map"}, "headers": headers})


# What `expand` may ask of model_info and list_models here, besides the fields every answer has.
EXPANDABLE = frozenset(
    {
        "author",
        "cardData",
        "createdAt",
        "disabled",
        "downloads",
        "gated",
        "lastModified",
        "library_name",
        "likes",
        "pipeline_tag",
        "private",
        "safetensors",
        "sha",
        "siblings",
        "tags",
    }
)


def info(repo: Repo, commit: Commit, siblings: bool = True, safetensors: bool = False) -> dict:
    """A repository at a commit, as the Hub's model_info, dataset_info, list_models and
    list_datasets describe it."""
    entries = list(commit.entries.all())
    meta = card.metadata(read_card(entries))
    tags = meta.get("tags") if isinstance(meta.get("tags"), list) else []
    item = {
        "_id": str(repo.pk),
        "id": repo.repo_id,
        "author": repo.namespace,
        "sha": commit.sha,
        "lastModified": hub_time(commit.created_at),
        "createdAt": hub_time(repo.created_at),
        "private": repo.private,
        "gated": False,
        "disabled": False,
        "downloads": 0,
        "likes": 0,
        "tags": [str(t) for t in tags],
        "cardData": meta or None,
    }
    if repo.type == Repo.MODEL:
        item |= {
            "modelId": repo.repo_id,
            "pipeline_tag": meta.get("pipeline_tag"),
            "library_name": meta.get("library_name"),
        }
    if siblings:
        item["siblings"] = [sibling(e) for e in entries]
    if safetensors:
        item["safetensors"] = safetensors_parameters(entries)
    return item


def expanded(request: HttpRequest) -> frozenset[str]:
    """The fields `expand` asks for (none: the usual answer)."""
    expand = frozenset(request.GET.getlist("expand") or request.GET.getlist("expand[]"))
    if unknown := expand - EXPANDABLE:
        raise RepoError(
            f"this hub cannot expand {', '.join(sorted(unknown))}: it expands {', '.join(sorted(EXPANDABLE))}"
        )
    return expand


def project(item: dict, expand: frozenset[str]) -> dict:
    """With `expand`, the Hub answers only those fields, and the id."""
    return {k: v for k, v in item.items() if k in expand or k in ("_id", "id")} if expand else item


@api_view("GET")
def repo_info(request: HttpRequest, repo_type: str, namespace: str, name: str, revision: str = MAIN) -> HttpResponse:
    """`model_info` and `dataset_info`."""
    repo, _, _ = find_repo(request, repo_type, namespace, name)
    expand = expanded(request)
    return JsonResponse(project(info(repo, repo.resolve(revision), safetensors="safetensors" in expand), expand))


SORTS = {"lastModified": ("updated_at",), "createdAt": ("created_at",), "id": ("namespace", "name")}
# The list filters answered here; any other parameter is refused rather than ignored, so that
# a script is never handed every repository as the answer to a question this hub cannot answer.
LIST_PARAMS = frozenset(
    {"search", "author", "filter", "sort", "direction", "limit", "full", "cardData", "expand", "cursor"}
    | {"pipeline_tag", "library", "gated", "num_parameters"}
)
PARAMETER_SIZE = re.compile(r"^(\d+(?:\.\d+)?)([KMBT]?)$")


def parameter_bounds(text: str) -> tuple[float, float]:
    """`min:6B,max:128B` (either end may be left out), as list_models' num_parameters says it."""
    low, high = 0.0, math.inf
    for part in text.split(","):
        end, _, size = part.partition(":")
        match = PARAMETER_SIZE.match(size.strip().upper())
        if end not in ("min", "max") or not match:
            raise RepoError(f"num_parameters must read like 'min:1B,max:8B', not {text!r}")
        value = float(match.group(1)) * 1000 ** " KMBT".index(match.group(2) or " ")
        low, high = (value, high) if end == "min" else (low, value)
    return low, high


def card_labels(meta: dict | None) -> set[str]:
    """What the Hub also files a repository under, from its card: `dataset:`, `license:` and
    language labels (list_models' `trained_dataset` filters by `dataset:...`)."""
    meta = meta or {}
    labels = set()
    for key, prefix in (("datasets", "dataset:"), ("license", "license:"), ("language", "")):
        values = meta.get(key)
        for value in values if isinstance(values, list) else [values]:
            if isinstance(value, str):
                labels.add(prefix + value)
    return labels


def listing_filter(request: HttpRequest) -> Callable[[dict], bool]:
    """Whether a listed repository (as `info` describes it) passes the request's filters."""
    wanted = set(request.GET.getlist("filter"))
    if library := request.GET.get("library"):
        wanted.add(library)
    pipeline = request.GET.get("pipeline_tag")
    gated = request.GET.get("gated")
    if gated not in (None, "true", "false", "True", "False"):
        raise RepoError(f"gated must be true or false, not {gated!r}")
    bounds = parameter_bounds(request.GET["num_parameters"]) if request.GET.get("num_parameters") else None

    def passes(item: dict) -> bool:
        labels = (
            set(item["tags"]) | {item.get("library_name"), item.get("pipeline_tag")} | card_labels(item["cardData"])
        )
        if not wanted <= labels or (pipeline and item.get("pipeline_tag") != pipeline):
            return False
        if gated is not None and gated.lower() == "true":
            return False  # nothing here is gated
        if bounds:
            counted = item.get("safetensors")
            return counted is not None and bounds[0] <= counted["total"] <= bounds[1]
        return True

    return passes


def list_repos(request: HttpRequest, repo_type: str) -> HttpResponse:
    """`list_models` and `list_datasets`: the repositories the caller may read, filtered by
    author, a search string in the id, card tags (every `filter` must match), pipeline tag,
    library and parameter count, newest change first unless `sort` says otherwise; pages of at
    most `limit` (100 by default) linked by `Link: rel=next`."""
    user, _ = authenticate(request)
    if unknown := sorted(set(request.GET) - LIST_PARAMS):
        raise RepoError(
            f"this hub does not filter {repo_type}s by {', '.join(unknown)}: it answers {', '.join(sorted(LIST_PARAMS))}",
            400,
            "FilterNotSupported",
        )
    repos = Repo.objects.visible_to(user).filter(type=repo_type).matching(request.GET.get("search", ""))
    if author := request.GET.get("author"):
        repos = repos.filter(namespace=author)
    sort = request.GET.get("sort") or "lastModified"
    if sort not in SORTS:
        raise RepoError(f"this hub sorts by {', '.join(SORTS)}, not {sort!r}")
    sign = "-" if request.GET.get("direction", "1" if sort == "id" else "-1") == "-1" else ""
    repos = repos.select_related("head").order_by(*(sign + field for field in SORTS[sort]), "namespace", "name")
    full = request.GET.get("full", "").lower() in ("1", "true")
    expand = expanded(request)
    limit = request.GET.get("limit", "100")
    if not limit.isdigit() or not 1 <= int(limit) <= 1000:
        raise RepoError(f"'limit' must be a number from 1 to 1000, not {limit!r}")
    start, size = cursor(request), int(limit)
    passes = listing_filter(request)

    def describe(repo: Repo) -> dict:
        counts = "safetensors" in expand or bool(request.GET.get("num_parameters"))
        return info(repo, repo.head, siblings=full or "siblings" in expand, safetensors=counts)

    if set(request.GET) & {"filter", "library", "pipeline_tag", "gated", "num_parameters"}:
        # these live in the cards and weights: such a filter reads every candidate, else only the page is read
        items = [i for i in map(describe, repos) if passes(i)]
        items, more = items[start : start + size], start + size < len(items)
    else:
        chosen = list(repos[start : start + size + 1])
        items, more = [describe(r) for r in chosen[:size]], len(chosen) > size
    if not request.GET.get("cardData") and not full and "cardData" not in expand:
        for item in items:
            item.pop("cardData")
    return page(request, [project(item, expand) for item in items], start + size if more else None)


@api_view("GET")
def list_models(request: HttpRequest) -> HttpResponse:
    return list_repos(request, Repo.MODEL)


@api_view("GET")
def list_datasets(request: HttpRequest) -> HttpResponse:
    return list_repos(request, Repo.DATASET)


@api_view("GET")
def refs(request: HttpRequest, repo_type: str, namespace: str, name: str) -> HttpResponse:
    """`list_repo_refs`: branches (main first) and tags; this hub has no pull requests."""
    repo, _, _ = find_repo(request, repo_type, namespace, name)
    answer: dict[str, list] = {
        "branches": [{"name": MAIN, "ref": f"refs/heads/{MAIN}", "targetCommit": repo.head.sha}],
        "converts": [],
        "tags": [],
        "pullRequests": [],
    }
    for ref in repo.refs.select_related("commit"):
        kind = "branches" if ref.kind == Ref.BRANCH else "tags"
        answer[kind].append({"name": ref.name, "ref": ref.full_name, "targetCommit": ref.commit.sha})
    return JsonResponse(answer)


@api_view("POST", "DELETE")
def branch(request: HttpRequest, repo_type: str, namespace: str, name: str, branch: str) -> HttpResponse:
    """`create_branch` (at `startingPoint`, else at main) and `delete_branch`, for the owner."""
    user, token = authenticate(request)
    repo = owned_repo(user, token, repo_type, namespace, name, "change the branches of")
    refuse_unless_publisher(repo, user)
    if request.method == "DELETE":
        repo.remove_ref(Ref.BRANCH, branch)
        return HttpResponse(status=200)
    start = json_body(request).get("startingPoint") if request.body else None
    if start is not None and not isinstance(start, str):
        raise RepoError("'startingPoint' must be a revision")
    repo.add_ref(Ref.BRANCH, branch, repo.resolve(start or MAIN))
    return JsonResponse({"name": branch})


@api_view("POST", "DELETE")
def tag(request: HttpRequest, repo_type: str, namespace: str, name: str, revision: str) -> HttpResponse:
    """`create_tag` (POST .../tag/{revision} with the tag in the body) and `delete_tag`
    (DELETE .../tag/{tag}), for the owner. A tag never moves: delete it and tag again."""
    user, token = authenticate(request)
    repo = owned_repo(user, token, repo_type, namespace, name, "tag")
    if request.method == "DELETE":
        refuse_unless_publisher(repo, user)  # the catalog names its publications' tags
        repo.remove_ref(Ref.TAG, revision)
        return HttpResponse(status=200)
    body = json_body(request)
    tag, message = body.get("tag"), body.get("message") or ""
    if not isinstance(tag, str) or not isinstance(message, str):
        raise RepoError("'tag' (and 'message', when given) must be strings")
    repo.add_ref(Ref.TAG, tag, repo.resolve(revision), message)
    return JsonResponse({"name": tag})


COMMITS_PAGE = 50


@api_view("GET")
def commits(request: HttpRequest, repo_type: str, namespace: str, name: str, revision: str) -> HttpResponse:
    """`list_repo_commits`: the revision and its ancestors, newest first."""
    repo, _, _ = find_repo(request, repo_type, namespace, name)
    history = repo.history(repo.resolve(revision))
    start = cursor(request)
    items = [
        {
            "id": c.sha,
            "title": c.title,
            "message": c.description,
            "date": hub_time(c.created_at),
            "authors": [{"user": c.author.username if c.author else "system"}],
        }
        for c in history[start : start + COMMITS_PAGE]
    ]
    return page(request, items, start + COMMITS_PAGE if len(history) > start + COMMITS_PAGE else None)


def tree_item(entry: Entry) -> dict:
    item = {"type": "file", "path": entry.path, "size": entry.size, "oid": entry.blob_id}
    if entry.lfs:
        item["lfs"] = {"oid": entry.sha256, "size": entry.size, "pointerSize": entry.pointer_size}
    return item


def folder_item(folder: str, inside: list[Entry]) -> dict:
    oid = hashlib.sha1("".join(f"{e.path}\0{e.blob_id}\n" for e in inside).encode()).hexdigest()
    return {"type": "directory", "path": folder, "oid": oid}


def last_commits(repo: Repo, tip: Commit) -> dict[str, Commit]:
    """For each file at `tip`, the newest commit in its history that added or changed it."""
    line = repo.history(tip)
    trees: dict[int, dict[str, str]] = {c.pk: {} for c in line}
    for commit_id, path, sha256 in Entry.objects.filter(commit__in=line).values_list("commit_id", "path", "sha256"):
        trees[commit_id][path] = sha256
    found: dict[str, Commit] = {}
    for i, commit in enumerate(line):
        before = trees[line[i + 1].pk] if i + 1 < len(line) else {}
        for path in trees[tip.pk].keys() - found.keys():
            if trees[commit.pk].get(path) != before.get(path):
                found[path] = commit
    return found


def with_last_commit(items: list[dict], repo: Repo, tip: Commit) -> list[dict]:
    """Tree or paths-info items with `lastCommit`, as `expand=True` asks (a folder's is its
    newest file's)."""
    changed = last_commits(repo, tip)
    for item in items:
        if item["type"] == "file":
            commit = changed[item["path"]]
        else:
            commit = max(
                (c for p, c in changed.items() if p.startswith(item["path"] + "/")), key=lambda c: c.created_at
            )
        item["lastCommit"] = {"id": commit.sha, "title": commit.title, "date": hub_time(commit.created_at)}
    return items


def wants_expand(request: HttpRequest, data=None) -> bool:
    return (data or request.GET).get("expand", "").lower() in ("1", "true")


@api_view("GET")
def tree(
    request: HttpRequest, repo_type: str, namespace: str, name: str, revision: str, path: str = ""
) -> HttpResponse:
    repo, _, _ = find_repo(request, repo_type, namespace, name)
    commit = repo.resolve(revision)
    recursive = request.GET.get("recursive", "").lower() in ("1", "true")
    prefix = check_path(path.strip("/")) + "/" if path.strip("/") else ""
    entries = [e for e in commit.entries.all() if e.path.startswith(prefix)]
    if prefix and not entries:
        raise RepoError(f"no folder {path!r} at {commit.sha}", 404, "EntryNotFound", commit.sha)
    folders: dict[str, list[Entry]] = {}
    items = []
    for entry in entries:
        rest = entry.path[len(prefix) :].split("/")
        for depth in range(1, len(rest) if recursive else min(len(rest), 2)):
            folders.setdefault(prefix + "/".join(rest[:depth]), []).append(entry)
        if recursive or len(rest) == 1:
            items.append(tree_item(entry))
    items += [folder_item(folder, inside) for folder, inside in folders.items()]
    items.sort(key=lambda item: item["path"])
    start = cursor(request)
    shown = items[start : start + TREE_PAGE]
    if wants_expand(request):
        with_last_commit(shown, repo, commit)
    return page(request, shown, start + TREE_PAGE if start + TREE_PAGE < len(items) else None)


@api_view("POST")
def paths_info(request: HttpRequest, repo_type: str, namespace: str, name: str, revision: str) -> HttpResponse:
    """`get_paths_info`: what each of `paths` is at the revision (file or folder); a path that
    is neither is left out, as on the Hub."""
    repo, _, _ = find_repo(request, repo_type, namespace, name)
    commit = repo.resolve(revision)
    form = json_body(request) if request.content_type == "application/json" else request.POST
    paths = form.getlist("paths") if hasattr(form, "getlist") else form.get("paths")
    if not isinstance(paths, list) or len(paths) > TREE_PAGE:
        raise RepoError(f"'paths' must be a list of at most {TREE_PAGE} paths")
    entries = list(commit.entries.all())
    items = []
    for path in dict.fromkeys(check_path(str(p).strip("/")) for p in paths):
        if entry := next((e for e in entries if e.path == path), None):
            items.append(tree_item(entry))
        elif inside := [e for e in entries if e.path.startswith(path + "/")]:
            items.append(folder_item(path, inside))
    if wants_expand(request, form):
        with_last_commit(items, repo, commit)
    return JsonResponse(items, safe=False)


# -- uploads ---------------------------------------------------------------------------------


@api_view("POST")
def preupload(request: HttpRequest, repo_type: str, namespace: str, name: str, revision: str) -> HttpResponse:
    _, _, _, head = writable_repo(request, repo_type, namespace, name, revision)
    files = json_body(request).get("files")
    if not isinstance(files, list):
        raise RepoError("'files' must be a list")
    existing = {e.path: e for e in head.entries.all()}
    answer = []
    for item in files:
        if not isinstance(item, dict) or not isinstance(item.get("size"), int):
            raise RepoError("each file needs a 'path' and an integer 'size'")
        path = check_path(item.get("path"))
        try:
            sample = base64.b64decode(item.get("sample") or "", validate=True)
        except (binascii.Error, TypeError):
            raise RepoError(f"{path}: 'sample' is not base64") from None
        mode = "lfs" if wants_lfs(path, item["size"], sample) else "regular"
        out = {"path": path, "uploadMode": mode, "shouldIgnore": False}
        if path in existing:
            out["oid"] = existing[path].sha256 if existing[path].lfs else existing[path].blob_id
        answer.append(out)
    return JsonResponse({"files": answer, "commitOid": head.sha})


@api_view("POST")
def lfs_batch(request: HttpRequest, repo_type: str, namespace: str, name: str) -> HttpResponse:
    user, token = authenticate(request)
    repo = owned_repo(user, token, repo_type, namespace, name)
    refuse_unless_publisher(repo, user)
    body = json_body(request)
    if body.get("operation") != "upload":
        raise RepoError("this hub's LFS endpoint takes uploads only; download through /resolve")
    if not isinstance(body.get("objects"), list):
        raise RepoError("'objects' must be a list")
    uploaded = set(LfsObject.objects.filter(repo=repo).values_list("oid", flat=True))
    objects = []
    for obj in body["objects"]:
        oid, size = (
            obj.get("oid") if isinstance(obj, dict) else None,
            obj.get("size") if isinstance(obj, dict) else None,
        )
        if not isinstance(oid, str) or not re.fullmatch(r"[0-9a-f]{64}", oid) or not isinstance(size, int) or size < 0:
            objects.append(
                {
                    "oid": str(oid),
                    "size": size if isinstance(size, int) else 0,
                    "error": {"code": 422, "message": "an object needs a sha256 hex 'oid' and a 'size'"},
                }
            )
        elif size > settings.HFAPI_MAX_FILE_SIZE:
            objects.append(
                {
                    "oid": oid,
                    "size": size,
                    "error": {
                        "code": 422,
                        "message": f"{size} bytes is more than this hub takes in one file ({settings.HFAPI_MAX_FILE_SIZE})",
                    },
                }
            )
        elif oid in uploaded and storage.has_object(oid, size):
            objects.append({"oid": oid, "size": size})  # no actions: already here
        else:
            claim = signing.dumps({"repo": repo.pk, "oid": oid, "size": size, "user": user.pk}, salt=UPLOAD_SALT)
            href = site_url(request, reverse("hfapi-lfs-upload", args=[claim]))
            objects.append(
                {
                    "oid": oid,
                    "size": size,
                    "authenticated": True,
                    "actions": {"upload": {"href": href, "expires_in": settings.HFAPI_UPLOAD_URL_TTL}},
                }
            )
    return JsonResponse(
        {"transfer": "basic", "objects": objects, "hash_algo": "sha256"}, content_type="application/vnd.git-lfs+json"
    )


@api_view("PUT")
def lfs_upload(request: HttpRequest, claim: str) -> HttpResponse:
    """The URL authorizes itself: signed by the batch endpoint for one object of one repository,
    valid for HFAPI_UPLOAD_URL_TTL. The body streams to disk and is accepted only if its size and
    sha256 are the ones the URL names."""
    try:
        grant = signing.loads(claim, salt=UPLOAD_SALT, max_age=settings.HFAPI_UPLOAD_URL_TTL)
    except signing.SignatureExpired:
        raise RepoError("this upload URL has expired: ask the LFS batch endpoint for a new one", 403) from None
    except signing.BadSignature:
        raise RepoError("invalid upload URL", 403) from None
    repo = Repo.objects.filter(pk=grant["repo"]).first()
    if repo is None:
        raise RepoError("the repository of this upload URL is gone", 404, "RepoNotFound")
    length = request.META.get("CONTENT_LENGTH")
    if not length or not length.isdigit() or int(length) != grant["size"]:
        raise RepoError(f"this URL takes exactly {grant['size']} bytes with a Content-Length (got {length or 'none'})")
    storage.receive(request.read, grant["size"], grant["oid"])
    LfsObject.objects.get_or_create(repo=repo, oid=grant["oid"], defaults={"size": grant["size"]})
    return HttpResponse(status=200)


@api_view("POST")
def commit(request: HttpRequest, repo_type: str, namespace: str, name: str, revision: str) -> HttpResponse:
    """NDJSON: a header line, then file (inline base64), lfsFile, deletedFile and deletedFolder
    lines. Inline contents go to the object store as they are read; the commit itself lands in
    one transaction, or not at all."""
    repo, user, branch, _ = writable_repo(request, repo_type, namespace, name, revision)
    line_limit = settings.HFAPI_LFS_THRESHOLD * 4 // 3 + 65536  # one inline file, base64, plus its JSON
    # what this repository may commit as LFS files: what was uploaded to it, and what it holds
    # already (a copy); never an object of another repository, whose sha256 is no key to it
    uploaded = dict(LfsObject.objects.filter(repo=repo).values_list("oid", "size"))
    uploaded |= dict(Entry.objects.filter(commit__repo=repo, lfs=True).values_list("sha256", "size"))
    header: dict | None = None
    added: dict[str, FileSpec] = {}
    deleted_files: set[str] = set()
    deleted_folders: set[str] = set()
    received = 0
    while line := request.readline(line_limit + 1):
        received += len(line)
        if len(line) > line_limit:
            raise RepoError("a line of the commit is too long: send files this large through LFS", 413)
        if not line.strip():
            continue
        try:
            item = parsing.load_json(line, "a line of the commit", max_chars=None)
            key, value = item["key"], item["value"]
        except (parsing.ParseError, KeyError, TypeError):
            raise RepoError("each line must be a JSON object with 'key' and 'value'") from None
        if not isinstance(value, dict):
            raise RepoError(f"the value of a {key!r} line must be a JSON object")
        if key == "header":
            header = value
        elif key == "file":
            path = check_path(value.get("path"))
            if value.get("encoding") != "base64":
                raise RepoError(f"{path}: inline content must be base64")
            try:
                data = base64.b64decode(value.get("content") or "", validate=True)
            except (binascii.Error, TypeError):
                raise RepoError(f"{path}: content is not base64") from None
            sha256, blob_id, size = storage.store_bytes(data)
            added[path] = FileSpec(size, sha256, blob_id, lfs=False)
        elif key == "lfsFile":
            path = check_path(value.get("path"))
            oid, size = value.get("oid"), value.get("size")
            if size is None and isinstance(oid, str) and oid in uploaded:
                size = uploaded[oid]  # a copy names only the object it copies
            if (
                value.get("algo", "sha256") != "sha256"
                or not isinstance(oid, str)
                or not isinstance(size, int)
                or oid not in uploaded
                or not storage.has_object(oid, size)
            ):
                raise RepoError(f"{path}: LFS object {oid} of {size} bytes was not uploaded to {repo.repo_id}")
            added[path] = FileSpec(size, oid, storage.git_blob_id(storage.lfs_pointer(oid, size)), lfs=True)
        elif key == "deletedFile":
            deleted_files.add(check_path(value.get("path")))
        elif key == "deletedFolder":
            folder = value.get("path")
            deleted_folders.add(check_path(folder.rstrip("/") if isinstance(folder, str) else folder))
        else:
            raise RepoError(f"unsupported commit operation {key!r}")
    refuse_if_cut_short(request, received, "nothing was committed")
    if not isinstance(header, dict) or not header.get("summary"):
        raise RepoError("the commit needs a header line with a summary")
    message = f"{header['summary']}{header.get('description') or ''}"
    if "\0" in message or any(unicodedata.category(c) == "Cs" for c in message):
        raise RepoError("the commit message may not contain NUL characters or lone surrogates")
    new = repo.commit(
        user,
        str(header["summary"]),
        str(header.get("description") or ""),
        header.get("parentCommit"),
        added,
        frozenset(deleted_files),
        frozenset(deleted_folders),
        branch,
    )
    return JsonResponse(
        {
            "success": True,
            "commitOid": new.sha,
            "commitUrl": site_url(request, f"/{repo.url_prefix}{repo.repo_id}/commit/{new.sha}"),
            "hookOutput": "",
        }
    )


# -- downloads -------------------------------------------------------------------------------


def read_range(path: Path, start: int, length: int) -> Iterator[bytes]:
    """Stream part of a file in bounded memory; the file closes when the client goes away."""
    with path.open("rb") as f:
        f.seek(start)
        while length > 0:
            block = f.read(min(storage.CHUNK, length))
            if not block:
                return
            length -= len(block)
            yield block


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, end inclusive) of a single `bytes=` range, None for the whole file; several
    ranges get the whole file (allowed by RFC 9110). Unsatisfiable ranges raise."""
    if not header:
        return None
    match = RANGE.match(header.strip())
    if not match or not (match.group(1) or match.group(2)):
        return None
    first, last = match.groups()
    if first:
        start, end = int(first), min(int(last), size - 1) if last else size - 1
    else:
        start, end = max(size - int(last), 0), size - 1
    if start >= size or start > end:
        raise RepoError(f"range {header} is outside the file ({size} bytes)", 416)
    return start, end


def resolve(request: HttpRequest, repo_type: str, namespace: str, name: str, revision: str, path: str) -> HttpResponse:
    if request.method not in ("GET", "HEAD"):
        return error(f"method {request.method} not allowed", 405)
    try:
        repo, _, _ = find_repo(request, repo_type, namespace, name)
        commit = repo.resolve(revision)
        entry = commit.entries.filter(path=check_path(path)).first()
        if entry is None:
            raise RepoError(f"Entry not found: {path} at {commit.sha}", 404, "EntryNotFound", commit.sha)
        span = parse_range(request.headers.get("Range"), entry.size)
    except RepoError as exc:
        response = error(str(exc), exc.status, exc.code, exc.commit)
        if exc.status == 416:
            response["Content-Range"] = f"bytes */{entry.size}"
        return response
    start, end = span or (0, entry.size - 1)
    length = end - start + 1 if entry.size else 0
    status = 206 if span else 200
    if request.method == "HEAD":
        response = HttpResponse(status=status)
    elif end == entry.size - 1:
        # to the end of the file: a FileResponse, which servers such as gunicorn send with sendfile
        f = storage.object_path(entry.sha256).open("rb")
        f.seek(start)
        response = FileResponse(f, status=status)
        response.block_size = storage.CHUNK
    else:
        response = StreamingHttpResponse(read_range(storage.object_path(entry.sha256), start, length), status=status)
    response["Content-Length"] = str(length)
    if span:
        response["Content-Range"] = f"bytes {start}-{end}/{entry.size}"
    confine(response, passive_type(path))
    response["Accept-Ranges"] = "bytes"
    response["ETag"] = f'"{entry.etag}"'
    response["X-Repo-Commit"] = commit.sha
    if entry.lfs:
        response["X-Linked-Etag"] = f'"{entry.sha256}"'
        response["X-Linked-Size"] = str(entry.size)
    response["Content-Disposition"] = content_disposition_header(
        request.GET.get("download") in ("1", "true", "True"), Path(path).name
    )
    return response


def archive(request: HttpRequest, repo_type: str, namespace: str, name: str, revision: str) -> HttpResponse:
    """The whole snapshot as one tar, streamed file by file (Content-Length known up front)."""
    try:
        repo, _, _ = find_repo(request, repo_type, namespace, name)
        commit = repo.resolve(revision)
    except RepoError as exc:
        return error(str(exc), exc.status, exc.code)
    top = f"{repo.name}-{commit.sha[:10]}"
    members = []
    for entry in commit.entries.all():
        info = tarfile.TarInfo(f"{top}/{entry.path}")
        info.size, info.mode, info.mtime = entry.size, 0o644, int(commit.created_at.timestamp())
        members.append((info.tobuf(tarfile.PAX_FORMAT), entry))
    end = b"\0" * 1024

    def body() -> Iterator[bytes]:
        for header, entry in members:
            yield header
            yield from read_range(storage.object_path(entry.sha256), 0, entry.size)
            yield b"\0" * (-entry.size % 512)
        yield end

    response = confine(StreamingHttpResponse(body()), "application/x-tar")
    response["Content-Length"] = str(sum(len(h) + e.size + -e.size % 512 for h, e in members) + len(end))
    response["Content-Disposition"] = content_disposition_header(True, f"{top}.tar")
    response["X-Repo-Commit"] = commit.sha
    return response


def repo_list(request: HttpRequest) -> HttpResponse:
    """Every repository the visitor may read, newest change first: uploads and published variants."""
    query = request.GET.get("q", "").strip()
    repos = (
        Repo.objects.visible_to(request.user)
        .matching(query)
        .select_related("head")
        .annotate(size=Sum("head__entries__size"), files=Count("head__entries"))
    )
    shown = Paginator(repos.order_by("-updated_at", "namespace", "name"), 50).get_page(request.GET.get("page"))
    return render(
        request,
        "hfapi/repos.html",
        {
            "page": shown,
            "query": query,
            "params": urlencode({"q": query}) if query else "",
            "endpoint": site_url(request),
        },
    )


def repo_page(request: HttpRequest, repo_type: str, namespace: str, name: str) -> HttpResponse:
    try:
        repo, _, _ = find_repo(request, repo_type, namespace, name)
    except RepoError:
        raise Http404(f"no repository {namespace}/{name}") from None
    commit: Commit = repo.head
    entries = list(commit.entries.all())
    text = read_card(entries)
    resolve_url = f"{repo.page_url}/resolve/{commit.sha}/"
    return render(
        request,
        "hfapi/repo.html",
        {
            "repo": repo,
            "commit": commit,
            "refs": repo.refs.select_related("commit"),
            "history": repo.history(commit)[:20],
            "meta": card.metadata(text),
            "card_html": card.render(text, resolve_url) if text else "",
            "files": [
                {"path": e.path, "size": e.size, "sha256": e.sha256, "url": f"{resolve_url}{e.path}?download=true"}
                for e in entries
            ],
            "total_size": sum(e.size for e in entries),
            "archive_url": f"{repo.page_url}/archive/{commit.sha}.tar",
            "endpoint": site_url(request),
        },
    )


@csrf_exempt  # nothing is done here, and a client's POST must get this answer, not a CSRF page
def unsupported(request: HttpRequest, rest: str) -> HttpResponse:
    """Every other /api/ path: a JSON answer the client can show, not an HTML page that reads
    like a wrong URL or a broken proxy."""
    parts = rest.split("/")
    if parts[0] in ("models", "datasets", "spaces") and len(parts) > 3:
        parts = parts[:1] + parts[3:]  # a repository's name says nothing of what is asked of it
    if part := next((part for part in parts if part in UNSUPPORTED), None):
        return error(f"{UNSUPPORTED[part]} not supported by this hub{REMEDIES.get(part, '')}", 404, "NotSupported")
    return error(
        f"this hub does not serve /api/{rest} (docs/hf-compat.md lists the Hub API it serves)", 404, "NotSupported"
    )


# What the Hub API offers that this hub does not, by the path segment that names it.
UNSUPPORTED = {
    "discussions": "discussions and pull requests are",
    "spaces": "Spaces are",
    "buckets": "storage buckets are",
    "kernels": "kernel repositories are",
    "collections": "collections are",
    "like": "likes are",
    "likes": "likes are",
    "likers": "likes are",
    "duplicate": "duplicating a repository is",
    "super-squash": "squashing history is",
    "lfs-files": "listing and purging LFS files is",
    "inference-endpoints": "inference endpoints are",
    "jobs": "Hub jobs are",
    "scheduled-jobs": "Hub jobs are",
    "webhooks": "webhooks are",
    "scan": "security scans are",
    "parquet": "parquet conversions of datasets are",
    "leaderboard": "dataset leaderboards are",
    "organizations": "organizations as accounts are",
    "users": "user profiles are",
    "notifications": "notifications are",
    "papers": "papers are",
    "daily_papers": "papers are",
    "models-tags-by-type": "tag listings are",
    "datasets-tags-by-type": "tag listings are",
    "access-requests": "gated access requests are",
    "user-access-request": "gated access requests are",
    "xet-read-token": "Xet storage is",
    "xet-write-token": "Xet storage is",
}
# huggingface_hub uploads through Xet whenever hf_xet is installed, whatever the server offers
XET_REMEDY = ": set HF_HUB_DISABLE_XET=1 and the client uploads and downloads over LFS"
REMEDIES = {"xet-read-token": XET_REMEDY, "xet-write-token": XET_REMEDY}
