"""The hub's own git-like repositories of models and datasets. A commit is immutable and lists
every file of its tree (path, size, sha256, git blob id); file contents live once on disk, named
by their sha256 (hub.hfapi.storage). The branch `main` is the repository's head (every listing
reads it); other branches and tags are Ref rows. A branch moves by a conditional UPDATE, so two
concurrent commits on the same parent cannot both land."""

import hashlib
import re
import unicodedata
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, models, transaction
from django.db.models.functions import Concat
from django.utils import timezone

from hub.hfapi import storage

COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")
# a commit id may be shortened to 7 characters, as git and the Hub accept, while it stays unambiguous
SHORT_SHA = re.compile(r"^[0-9a-f]{7,40}$")
# one path segment, so that a ref names itself in every URL (`/resolve/{revision}/{path}`)
REF_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
MAIN = "main"
# HF's .gitattributes for a new model repository: which files git would keep in LFS.
GITATTRIBUTES = "".join(
    f"*.{ext} filter=lfs diff=lfs merge=lfs -text\n"
    for ext in (
        "7z",
        "arrow",
        "bin",
        "bz2",
        "ckpt",
        "ftz",
        "gz",
        "h5",
        "joblib",
        "mlmodel",
        "model",
        "msgpack",
        "npy",
        "npz",
        "onnx",
        "ot",
        "parquet",
        "pb",
        "pickle",
        "pkl",
        "pt",
        "pth",
        "rar",
        "safetensors",
        "tar",
        "tflite",
        "tgz",
        "wasm",
        "xz",
        "zip",
        "zst",
    )
)


LFS_SUFFIXES = tuple("." + line.split()[0][2:] for line in GITATTRIBUTES.splitlines())


def wants_lfs(path: str, size: int, sample: bytes) -> bool:
    """Whether git would keep the file in LFS: large, binary, or of a type .gitattributes names."""
    return size >= settings.HFAPI_LFS_THRESHOLD or b"\0" in sample or path.lower().endswith(LFS_SUFFIXES)


class RepoError(Exception):
    """A request the repository refuses; `status` and `code` become the HTTP answer."""

    def __init__(self, message: str, status: int = 400, code: str = "", commit: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.commit = commit  # sent as X-Repo-Commit, so a client can cache "no such file at this commit"


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


class RepoQuerySet(models.QuerySet):
    def visible_to(self, user) -> "RepoQuerySet":
        """What `user` (None or anonymous: anyone) may read: the public repositories and their
        own; staff read all. Anyone else's private repository is as good as missing."""
        if user is None or not user.is_authenticated:
            return self.filter(private=False)
        return self if user.is_staff else self.filter(models.Q(private=False) | models.Q(namespace=user.username))

    def with_repo_id(self) -> "RepoQuerySet":
        """Model repositories annotated with `full_id`, "namespace/name": the id other apps
        store to name the repository a model came from or went to."""
        return self.filter(type=Repo.MODEL).annotate(
            full_id=Concat("namespace", models.Value("/"), "name", output_field=models.CharField())
        )

    def storage(self) -> dict[int, int]:
        """The bytes each repository keeps, by pk: every content of its whole history, once."""
        used: dict[int, int] = {}
        rows = Entry.objects.filter(commit__repo__in=self).values_list("commit__repo", "sha256", "size").distinct()
        for pk, _, size in rows:
            used[pk] = used.get(pk, 0) + size
        return used

    def matching(self, text: str) -> "RepoQuerySet":
        """Those whose id holds every word of `text`."""
        repos = self
        for word in text.split():
            repos = repos.filter(models.Q(namespace__icontains=word) | models.Q(name__icontains=word))
        return repos


class Repo(models.Model):
    MODEL, DATASET = "model", "dataset"

    type = models.CharField(max_length=16, choices=[(MODEL, "model"), (DATASET, "dataset")], default=MODEL)
    namespace = models.CharField(max_length=96, help_text="a user name, or any organization name staff choose")
    name = models.CharField(max_length=96)
    private = models.BooleanField(default=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    head = models.ForeignKey(
        "Commit",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="the commit the branch main points at",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = RepoQuerySet.as_manager()

    class Meta:
        ordering = ["namespace", "name"]
        constraints = [models.UniqueConstraint(fields=["type", "namespace", "name"], name="repo_unique_id")]

    def __str__(self) -> str:
        return self.repo_id

    @property
    def repo_id(self) -> str:
        return f"{self.namespace}/{self.name}"

    def owned_by(self, user) -> bool:
        return user.is_staff or user.username == self.namespace

    @property
    def url_prefix(self) -> str:
        """What precedes the id in the Hub's URLs of this repository: nothing for models."""
        return "datasets/" if self.type == self.DATASET else ""

    @property
    def page_url(self) -> str:
        return f"/{self.url_prefix}{self.repo_id}"

    @classmethod
    def create(cls, namespace: str, name: str, user, private: bool, type: str = MODEL) -> "Repo":
        """A new repository whose main branch starts, as on the Hub, with a .gitattributes commit."""
        with transaction.atomic():
            repo = cls.objects.create(type=type, namespace=namespace, name=name, private=private, created_by=user)
            sha256, blob_id, size = storage.store_bytes(GITATTRIBUTES.encode())
            repo.commit(
                user,
                "initial commit",
                "",
                parent=None,
                added={".gitattributes": FileSpec(size, sha256, blob_id, lfs=False)},
            )
        return repo

    def delete_with_contents(self) -> None:
        """Delete the repository, its history, and the stored files no other repository uses.
        An upload of the same content racing this can lose its file; its commit then fails
        with "was not uploaded" and the client uploads again."""
        contents = set(Entry.objects.filter(commit__repo=self).values_list("sha256", flat=True))
        contents |= set(self.lfs_objects.values_list("oid", flat=True))
        with transaction.atomic():
            # head and parent links protect commits from deletion one by one; here all of them go
            Repo.objects.filter(pk=self.pk).update(head=None)
            self.refs.all().delete()
            self.commits.update(parent=None)
            self.delete()
        kept = set(Entry.objects.filter(sha256__in=contents).values_list("sha256", flat=True))
        kept |= set(LfsObject.objects.filter(oid__in=contents).values_list("oid", flat=True))
        for sha256 in contents - kept:
            storage.object_path(sha256).unlink(missing_ok=True)

    def commit_folder(self, folder: Path, user, title: str) -> "Commit":
        """Every file under `folder` as one commit on main, stored as an upload would be.
        Refuses links (they could reach outside the folder) and names a client could not upload."""
        added = {}
        for file in sorted(p for p in folder.rglob("*") if not p.is_dir() or p.is_symlink()):
            path = check_path(file.relative_to(folder).as_posix())
            if file.is_symlink() or not file.is_file():
                raise RepoError(f"{path}: not a regular file (links are not followed)")
            size = file.stat().st_size
            with file.open("rb") as f:
                sample = f.read(512)
                f.seek(0)
                sha256, blob_id = storage.receive(f.read, size)
            lfs = wants_lfs(path, size, sample)
            if lfs:
                blob_id = storage.git_blob_id(storage.lfs_pointer(sha256, size))
            added[path] = FileSpec(size, sha256, blob_id, lfs)
        if not added:
            raise RepoError(f"{folder} holds no files")
        return self.commit(user, title, "", parent=None, added=added)

    def resolve(self, revision: str) -> "Commit":
        """The commit a revision names: a branch, a tag (with or without `refs/heads/`,
        `refs/tags/`), or a commit id of this repository, whole or shortened."""
        name = revision.removeprefix("refs/heads/").removeprefix("refs/tags/")
        if name == MAIN:
            return self.head
        # a name no ref may have is looked up nowhere (the database refuses some characters outright)
        if REF_NAME.match(name) and (ref := self.refs.filter(name=name).select_related("commit").first()):
            return ref.commit
        if SHORT_SHA.match(revision):
            found = list(self.commits.filter(sha__startswith=revision)[:2])
            if len(found) == 2:
                raise RepoError(
                    f"{revision} names more than one commit: give more of its characters", 404, "RevisionNotFound"
                )
            if found:
                return found[0]
        raise RepoError(f"Invalid rev id: {revision}", 404, "RevisionNotFound")

    def branch_head(self, branch: str) -> "Commit":
        """The commit `branch` points at; a tag or commit id is not a branch (commits go on branches)."""
        if branch == MAIN:
            return self.head
        ref = REF_NAME.match(branch) and self.refs.filter(name=branch, kind=Ref.BRANCH).select_related("commit").first()
        if not ref:
            raise RepoError(f"Invalid rev id: {branch} is not a branch of {self.repo_id}", 404, "RevisionNotFound")
        return ref.commit

    def history(self, tip: "Commit") -> list["Commit"]:
        """`tip` and its ancestors, newest first: branches make the history a tree, not a line."""
        commits = {c.pk: c for c in self.commits.select_related("author")}
        line, at = [], commits.get(tip.pk)
        while at is not None:
            line.append(at)
            at = commits.get(at.parent_id)
        return line

    def add_ref(self, kind: str, name: str, commit: "Commit", message: str = "") -> "Ref":
        """A new branch or tag. Branches and tags share one set of names, so that a revision
        always names one thing."""
        if not REF_NAME.match(name) or SHORT_SHA.match(name) or name == MAIN:
            raise RepoError(
                f"invalid {kind} name {name!r}: use up to 100 letters, digits, '.', '_' or '-', not 'main' "
                "nor one that reads as a commit id"
            )
        try:
            with transaction.atomic():
                return Ref.objects.create(repo=self, kind=kind, name=name, commit=commit, message=message)
        except IntegrityError:
            taken = self.refs.get(name=name)
            raise RepoError(f"{self.repo_id} already has a {taken.kind} named {name}", 409) from None

    def remove_ref(self, kind: str, name: str) -> None:
        if kind == Ref.BRANCH and name == MAIN:
            raise RepoError("the branch main cannot be deleted", 403)
        if not self.refs.filter(kind=kind, name=name).delete()[0]:
            raise RepoError(f"{self.repo_id} has no {kind} named {name}", 404, "RevisionNotFound")

    def commit(
        self,
        user,
        title: str,
        description: str,
        parent: str | None,
        added: dict[str, "FileSpec"],
        deleted_files: frozenset[str] = frozenset(),
        deleted_folders: frozenset[str] = frozenset(),
        branch: str = MAIN,
    ) -> "Commit":
        """Apply all changes as one new commit on `branch`, or none of them. Every added file's
        content must already be in the object store."""
        with transaction.atomic():
            if branch == MAIN:
                tip = Repo.objects.filter(pk=self.pk)
                head = tip.values_list("head", flat=True).get()
            else:
                tip = Ref.objects.filter(repo=self, kind=Ref.BRANCH, name=branch)
                head = self.branch_head(branch).pk
            head_commit = Commit.objects.filter(pk=head).first() if head else None
            if parent and (head_commit is None or head_commit.sha != parent):
                raise RepoError(f"parent commit {parent} is not the head of {branch} (it moved): fetch and retry", 412)
            tree = (
                {e.path: FileSpec(e.size, e.sha256, e.blob_id, e.lfs) for e in head_commit.entries.all()}
                if head_commit
                else {}
            )
            for path in deleted_files:
                if tree.pop(path, None) is None:
                    raise RepoError(f"cannot delete {path}: no such file", 404, "EntryNotFound")
            for folder in deleted_folders:
                prefix = folder.rstrip("/") + "/"
                for path in [p for p in tree if p.startswith(prefix)]:
                    del tree[path]
            tree.update(added)
            for path in tree:
                parts = path.split("/")
                for i in range(1, len(parts)):
                    if "/".join(parts[:i]) in tree:
                        raise RepoError(f"{path}: a file named {'/'.join(parts[:i])} is in the way")
            now = timezone.now()
            sha = commit_sha(head_commit.sha if head_commit else "", tree, user, title, description, now)
            commit = Commit.objects.create(
                repo=self,
                sha=sha,
                parent=head_commit,
                title=title[:500],
                description=description,
                author=user,
                created_at=now,
            )
            Entry.objects.bulk_create(
                Entry(commit=commit, path=p, size=f.size, sha256=f.sha256, blob_id=f.blob_id, lfs=f.lfs)
                for p, f in sorted(tree.items())
            )
            # the conditional UPDATE is what makes concurrent commits on one parent exclusive
            moved = (
                tip.filter(head=head).update(head=commit)
                if branch == MAIN
                else tip.filter(commit=head).update(commit=commit)
            )
            if not moved:
                raise RepoError("another commit landed at the same time: retry", 409)
            Repo.objects.filter(pk=self.pk).update(updated_at=now)
            if branch == MAIN:
                self.head = commit
        return commit


class FileSpec:
    __slots__ = ("size", "sha256", "blob_id", "lfs")

    def __init__(self, size: int, sha256: str, blob_id: str, lfs: bool) -> None:
        self.size, self.sha256, self.blob_id, self.lfs = size, sha256, blob_id, lfs


def commit_sha(parent: str, tree: dict[str, FileSpec], user, title: str, description: str, when) -> str:
    text = "".join(f"{p}\0{f.sha256}\0{f.lfs:d}\n" for p, f in sorted(tree.items()))
    text += f"parent {parent}\nauthor {getattr(user, 'pk', '')}\ndate {when.isoformat()}\n\n{title}\n\n{description}"
    return hashlib.sha1(text.encode()).hexdigest()


class Commit(models.Model):
    repo = models.ForeignKey(Repo, on_delete=models.CASCADE, related_name="commits")
    sha = models.CharField(max_length=40, unique=True)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    title = models.CharField(max_length=500)
    description = models.TextField(blank=True)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.repo}@{self.sha[:10]}"


class Entry(models.Model):
    """One file of one commit's tree."""

    commit = models.ForeignKey(Commit, on_delete=models.CASCADE, related_name="entries")
    path = models.CharField(max_length=1000)
    size = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    blob_id = models.CharField(max_length=40, help_text="git blob sha1 (of the LFS pointer for LFS files)")
    lfs = models.BooleanField(default=False)

    class Meta:
        ordering = ["path"]
        constraints = [models.UniqueConstraint(fields=["commit", "path"], name="entry_unique_path")]

    def __str__(self) -> str:
        return self.path

    @property
    def etag(self) -> str:
        """What the Hub sends as the file's ETag: sha256 for LFS files, the git blob id otherwise."""
        return self.sha256 if self.lfs else self.blob_id

    @property
    def pointer_size(self) -> int:
        """The size of the LFS pointer git holds in place of an LFS file."""
        return len(storage.lfs_pointer(self.sha256, self.size))


class Ref(models.Model):
    """A branch other than main, or a tag. A tag never moves; a branch moves with each commit on it."""

    BRANCH, TAG = "branch", "tag"

    repo = models.ForeignKey(Repo, on_delete=models.CASCADE, related_name="refs")
    kind = models.CharField(max_length=8, choices=[(BRANCH, "branch"), (TAG, "tag")])
    name = models.CharField(max_length=100)
    commit = models.ForeignKey(Commit, on_delete=models.PROTECT, related_name="+")
    message = models.TextField(blank=True, help_text="a tag's message")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["kind", "name"]
        constraints = [models.UniqueConstraint(fields=["repo", "name"], name="ref_unique_name")]

    def __str__(self) -> str:
        return f"{self.repo}:{self.name}"

    @property
    def full_name(self) -> str:
        return f"refs/{'heads' if self.kind == self.BRANCH else 'tags'}/{self.name}"


class LfsObject(models.Model):
    """An LFS object uploaded to a repository. Content is shared on disk, but a repository may
    commit only objects uploaded to it: knowing a sha256 is not enough to read another's file."""

    repo = models.ForeignKey(Repo, on_delete=models.CASCADE, related_name="lfs_objects")
    oid = models.CharField(max_length=64)
    size = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["repo", "oid"], name="lfs_object_once")]
