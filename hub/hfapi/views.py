"""The Hugging Face Hub HTTP API over the hub's own repositories, as `huggingface_hub`,
transformers and vLLM use it with HF_ENDPOINT pointing here (uploads need HF_HUB_DISABLE_XET=1:
this hub speaks LFS, not Xet). Shapes follow the Hub's own answers as the client parses them; errors
carry X-Error-Code so clients raise RepositoryNotFound / RevisionNotFound / EntryNotFound."""

import base64
import binascii
import hashlib
import json
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
from hub.catalog.checkpoints import CheckpointError
from hub.catalog.models import Publication
from hub.catalog.store import check_repo_name
from hub.hfapi import card, storage
from hub.hfapi.converters import RESERVED, own_namespace
from hub.hfapi.models import GITATTRIBUTES, Commit, Entry, FileSpec, LfsObject, Repo, RepoError
from hub.userfiles import confine, passive_type

UPLOAD_SALT = "hub.hfapi.lfs-upload"
TREE_PAGE = 1000
CARD_LIMIT = 1 << 20
LFS_SUFFIXES = tuple("." + line.split()[0][2:] for line in GITATTRIBUTES.splitlines())
RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def error(message: str, status: int, code: str = "", commit: str = "") -> JsonResponse:
    response = JsonResponse({"error": message}, status=status)
    response["X-Error-Message"] = message.replace("\n", " ")[:500]
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


def find_repo(request: HttpRequest, namespace: str, name: str) -> tuple[Repo, object | None, ApiToken | None]:
    user, token = authenticate(request)
    return readable_repo(user, namespace, name), user, token


def readable_repo(user, namespace: str, name: str) -> Repo:
    repo = Repo.objects.visible_to(user).filter(namespace=namespace, name=name).select_related("head").first()
    if repo is None:  # a private repository is indistinguishable from a missing one to those who may not read it
        raise RepoError(f"Repository not found: {namespace}/{name}", 404, "RepoNotFound")
    return repo


def write_access(token: ApiToken | None) -> ApiToken:
    if token is None:
        raise RepoError("writing needs a token with the write scope (Authorization: Bearer ...)", 401)
    if not token.can_write:
        raise RepoError("this token is read-only: writing needs a token with the write scope", 403)
    return token


def owned_repo(user, token: ApiToken | None, namespace: str, name: str, doing: str = "write to") -> Repo:
    repo = readable_repo(user, namespace, name)
    write_access(token)
    if not repo.owned_by(user):
        raise RepoError(f"{user.username} may not {doing} {repo.repo_id}", 403)
    return repo


def writable_repo(request: HttpRequest, namespace: str, name: str, revision: str) -> tuple[Repo, object]:
    user, token = authenticate(request)
    repo = owned_repo(user, token, namespace, name)
    refuse_unless_publisher(repo, user)
    if revision != "main":
        raise RepoError("this hub accepts commits on the branch main only", 400, "RevisionNotFound")
    if request.GET.get("create_pr") in ("1", "true", "True"):
        raise RepoError("pull requests are not supported by this hub", 400)
    return repo, user


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


# Characters a name may not hold: control characters (Cc), which rewrite terminals and logs;
# invisible format characters (Cf: bidi overrides and isolates, zero-width, byte-order mark), which
# make a name look like another; surrogates (Cs), which UTF-8 cannot store; line and paragraph
# separators (Zl, Zp).
HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def check_path(path: object) -> str:
    """A file path of a repository; every route that takes one goes through here."""
    if (
        not isinstance(path, str)
        or not path
        or len(path) > 1000
        or path.startswith("/")
        or "\\" in path
        or "\0" in path
        or any(part in ("", ".", "..") for part in path.split("/"))
        or path.split("/")[0] == ".git"
    ):
        raise RepoError(f"invalid file path {path!r}")
    if hidden := next((c for c in path if unicodedata.category(c) in HIDDEN_CATEGORIES), None):
        name = f" ({unicodedata.name(hidden)})" if unicodedata.name(hidden, "") else ""
        raise RepoError(
            f"invalid file path {path!r}: it holds U+{ord(hidden):04X}{name}, a control or invisible character"
        )
    return path


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


def named_repo(body: dict, user) -> tuple[str, str]:
    """(namespace, name) of a create or delete request: `organization`, or the user's own name."""
    if body.get("type") not in (None, "model"):
        raise RepoError(f"this hub keeps model repositories only, not {body['type']!r}")
    name, namespace = body.get("name"), body.get("organization") or user.username
    if not isinstance(name, str) or not isinstance(namespace, str):
        raise RepoError("'name' (and 'organization', when given) must be strings")
    return namespace, name


@api_view("POST")
def create_repo(request: HttpRequest) -> HttpResponse:
    user, token = authenticate(request)
    write_access(token)
    body = json_body(request)
    namespace, name = named_repo(body, user)
    check_repo_name(f"{namespace}/{name}")
    if namespace.lower() in RESERVED:
        # the default superuser, `admin`, meets this on its first upload
        hint = (
            f"; as staff you may use any other namespace, such as {own_namespace(user)}/{name}" if user.is_staff else ""
        )
        raise RepoError(f"{namespace!r} is reserved for the hub's own pages{hint}")
    if not (user.is_staff or namespace == user.username):
        raise RepoError(f"you may create repositories only under your own name, {user.username}", 403)
    url = site_url(request, f"/{namespace}/{name}")
    private = body.get("visibility") == "private" or body.get("private") is True
    try:
        if Repo.objects.filter(namespace=namespace, name=name).exists():
            raise IntegrityError
        repo = Repo.create(namespace, name, user, private)
    except IntegrityError:
        response = error(f"You already created this model repo: {namespace}/{name}", 409)
        response.content = json.dumps({"error": "You already created this model repo", "url": url}).encode()
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


def refuse_if_published(repo: Repo, consequence: str) -> None:
    """The catalog links to the repositories its variants were published to and sets their visibility."""
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
def repo_settings(request: HttpRequest, namespace: str, name: str) -> HttpResponse:
    """`update_repo_settings`: visibility, for the owner. Gating is not a feature of this hub."""
    repo = owned_repo(*authenticate(request), namespace, name, "change the settings of")
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


def info(repo: Repo, commit: Commit, siblings: bool = True) -> dict:
    """A repository at a commit, as the Hub's model_info and list_models describe it."""
    entries = list(commit.entries.all())
    meta = card.metadata(read_card(entries))
    tags = meta.get("tags") if isinstance(meta.get("tags"), list) else []
    item = {
        "_id": str(repo.pk),
        "id": repo.repo_id,
        "modelId": repo.repo_id,
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
        "pipeline_tag": meta.get("pipeline_tag"),
        "library_name": meta.get("library_name"),
        "cardData": meta or None,
    }
    if siblings:
        item["siblings"] = [sibling(e) for e in entries]
    return item


@api_view("GET")
def model_info(request: HttpRequest, namespace: str, name: str, revision: str = "main") -> HttpResponse:
    repo, _, _ = find_repo(request, namespace, name)
    return JsonResponse(info(repo, repo.resolve(revision)))


SORTS = {"lastModified": ("updated_at",), "createdAt": ("created_at",), "id": ("namespace", "name")}


@api_view("GET")
def list_models(request: HttpRequest) -> HttpResponse:
    """`HfApi().list_models`: the repositories the caller may read, filtered by author, a search
    string in the id and card tags (every `filter` must match), newest change first unless
    `sort` says otherwise; pages of at most `limit` (100 by default) linked by `Link: rel=next`."""
    user, _ = authenticate(request)
    repos = Repo.objects.visible_to(user).matching(request.GET.get("search", "")).select_related("head")
    if author := request.GET.get("author"):
        repos = repos.filter(namespace=author)
    sort = request.GET.get("sort") or "lastModified"
    if sort not in SORTS:
        raise RepoError(f"this hub sorts by {', '.join(SORTS)}, not {sort!r}")
    sign = "-" if request.GET.get("direction", "1" if sort == "id" else "-1") == "-1" else ""
    repos = repos.order_by(*(sign + field for field in SORTS[sort]), "namespace", "name")
    wanted = set(request.GET.getlist("filter"))
    full = request.GET.get("full", "").lower() in ("1", "true")
    limit = request.GET.get("limit", "100")
    if not limit.isdigit() or not 1 <= int(limit) <= 1000:
        raise RepoError(f"'limit' must be a number from 1 to 1000, not {limit!r}")
    start, size = cursor(request), int(limit)
    if wanted:  # tags live in the cards: a tag filter reads every candidate's card, else only the page's are read
        items = [
            i
            for i in (info(r, r.head, siblings=full) for r in repos)
            if wanted <= set(i["tags"]) | {i["library_name"], i["pipeline_tag"]}
        ]
        items, more = items[start : start + size], start + size < len(items)
    else:
        chosen = list(repos[start : start + size + 1])
        items, more = [info(r, r.head, siblings=full) for r in chosen[:size]], len(chosen) > size
    if not request.GET.get("cardData") and not full:
        for item in items:
            item.pop("cardData")
    return page(request, items, start + size if more else None)


@api_view("GET")
def refs(request: HttpRequest, namespace: str, name: str) -> HttpResponse:
    """`list_repo_refs`: this hub keeps one branch, main, and no tags or pull requests."""
    repo, _, _ = find_repo(request, namespace, name)
    main = {"name": "main", "ref": "refs/heads/main", "targetCommit": repo.head.sha}
    return JsonResponse({"branches": [main], "converts": [], "tags": [], "pullRequests": []})


COMMITS_PAGE = 50


@api_view("GET")
def commits(request: HttpRequest, namespace: str, name: str, revision: str) -> HttpResponse:
    """`list_repo_commits`: the revision and its ancestors, newest first. History is linear (a
    commit lands only on the head it was made against), so the ancestors are the repository's
    earlier commits."""
    repo, _, _ = find_repo(request, namespace, name)
    tip = repo.resolve(revision)
    history = repo.commits.filter(pk__lte=tip.pk).select_related("author").order_by("-pk")
    start = cursor(request)
    chosen = list(history[start : start + COMMITS_PAGE + 1])
    items = [
        {
            "id": c.sha,
            "title": c.title,
            "message": c.description,
            "date": hub_time(c.created_at),
            "authors": [{"user": c.author.username if c.author else "system"}],
        }
        for c in chosen[:COMMITS_PAGE]
    ]
    return page(request, items, start + COMMITS_PAGE if len(chosen) > COMMITS_PAGE else None)


def tree_item(entry: Entry) -> dict:
    item = {"type": "file", "path": entry.path, "size": entry.size, "oid": entry.blob_id}
    if entry.lfs:
        item["lfs"] = {"oid": entry.sha256, "size": entry.size, "pointerSize": entry.pointer_size}
    return item


@api_view("GET")
def tree(request: HttpRequest, namespace: str, name: str, revision: str, path: str = "") -> HttpResponse:
    repo, _, _ = find_repo(request, namespace, name)
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
    for folder, inside in folders.items():
        oid = hashlib.sha1("".join(f"{e.path}\0{e.blob_id}\n" for e in inside).encode()).hexdigest()
        items.append({"type": "directory", "path": folder, "oid": oid})
    items.sort(key=lambda item: item["path"])
    start = cursor(request)
    return page(
        request, items[start : start + TREE_PAGE], start + TREE_PAGE if start + TREE_PAGE < len(items) else None
    )


# -- uploads ---------------------------------------------------------------------------------


def wants_lfs(path: str, size: int, sample: bytes) -> bool:
    return size >= settings.HFAPI_LFS_THRESHOLD or b"\0" in sample or path.lower().endswith(LFS_SUFFIXES)


@api_view("POST")
def preupload(request: HttpRequest, namespace: str, name: str, revision: str) -> HttpResponse:
    repo, _ = writable_repo(request, namespace, name, revision)
    files = json_body(request).get("files")
    if not isinstance(files, list):
        raise RepoError("'files' must be a list")
    existing = {e.path: e for e in repo.head.entries.all()}
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
    return JsonResponse({"files": answer, "commitOid": repo.head.sha})


@api_view("POST")
def lfs_batch(request: HttpRequest, namespace: str, name: str) -> HttpResponse:
    user, token = authenticate(request)
    repo = owned_repo(user, token, namespace, name)
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
def commit(request: HttpRequest, namespace: str, name: str, revision: str) -> HttpResponse:
    """NDJSON: a header line, then file (inline base64), lfsFile, deletedFile and deletedFolder
    lines. Inline contents go to the object store as they are read; the commit itself lands in
    one transaction, or not at all."""
    repo, user = writable_repo(request, namespace, name, revision)
    line_limit = settings.HFAPI_LFS_THRESHOLD * 4 // 3 + 65536  # one inline file, base64, plus its JSON
    uploaded = set(LfsObject.objects.filter(repo=repo).values_list("oid", flat=True))
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
    )
    return JsonResponse(
        {
            "success": True,
            "commitOid": new.sha,
            "commitUrl": site_url(request, f"/{repo.repo_id}/commit/{new.sha}"),
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


def resolve(request: HttpRequest, namespace: str, name: str, revision: str, path: str) -> HttpResponse:
    if request.method not in ("GET", "HEAD"):
        return error(f"method {request.method} not allowed", 405)
    try:
        repo, _, _ = find_repo(request, namespace, name)
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


def archive(request: HttpRequest, namespace: str, name: str, revision: str) -> HttpResponse:
    """The whole snapshot as one tar, streamed file by file (Content-Length known up front)."""
    try:
        repo, _, _ = find_repo(request, namespace, name)
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


def repo_page(request: HttpRequest, namespace: str, name: str) -> HttpResponse:
    try:
        repo, _, _ = find_repo(request, namespace, name)
    except RepoError:
        raise Http404(f"no repository {namespace}/{name}") from None
    commit: Commit = repo.head
    entries = list(commit.entries.all())
    text = read_card(entries)
    resolve_url = reverse("hfapi-resolve", args=[namespace, name, commit.sha, "_"])[:-1]
    endpoint = site_url(request)
    return render(
        request,
        "hfapi/repo.html",
        {
            "repo": repo,
            "commit": commit,
            "history": repo.commits.order_by("-created_at")[:20],
            "meta": card.metadata(text),
            "card_html": card.render(text, resolve_url) if text else "",
            "files": [
                {"path": e.path, "size": e.size, "sha256": e.sha256, "url": f"{resolve_url}{e.path}?download=true"}
                for e in entries
            ],
            "total_size": sum(e.size for e in entries),
            "archive_url": reverse("hfapi-archive", args=[namespace, name, commit.sha]),
            "endpoint": endpoint,
        },
    )
