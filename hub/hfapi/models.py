"""The hub's own git-like model repositories. A commit is immutable and lists every file of its
tree (path, size, sha256, git blob id); file contents live once on disk, named by their sha256
(hub.hfapi.storage). The branch `main` is the repository's head, moved by a conditional UPDATE
so two concurrent commits on the same parent cannot both land."""

import hashlib
import re

from django.conf import settings
from django.db import models, transaction
from django.db.models.functions import Concat
from django.utils import timezone

from hub.hfapi import storage

COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")
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


class RepoError(Exception):
    """A request the repository refuses; `status` and `code` become the HTTP answer."""

    def __init__(self, message: str, status: int = 400, code: str = "", commit: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.commit = commit  # sent as X-Repo-Commit, so a client can cache "no such file at this commit"


class RepoQuerySet(models.QuerySet):
    def visible_to(self, user) -> "RepoQuerySet":
        """What `user` (None or anonymous: anyone) may read: the public repositories and their
        own; staff read all. Anyone else's private repository is as good as missing."""
        if user is None or not user.is_authenticated:
            return self.filter(private=False)
        return self if user.is_staff else self.filter(models.Q(private=False) | models.Q(namespace=user.username))

    def with_repo_id(self) -> "RepoQuerySet":
        """Annotated with `full_id`, "namespace/name": the id other apps store to name a repository."""
        return self.annotate(full_id=Concat("namespace", models.Value("/"), "name", output_field=models.CharField()))

    def matching(self, text: str) -> "RepoQuerySet":
        """Those whose id holds every word of `text`."""
        repos = self
        for word in text.split():
            repos = repos.filter(models.Q(namespace__icontains=word) | models.Q(name__icontains=word))
        return repos


class Repo(models.Model):
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
        constraints = [models.UniqueConstraint(fields=["namespace", "name"], name="repo_unique_id")]

    def __str__(self) -> str:
        return self.repo_id

    @property
    def repo_id(self) -> str:
        return f"{self.namespace}/{self.name}"

    def owned_by(self, user) -> bool:
        return user.is_staff or user.username == self.namespace

    @classmethod
    def create(cls, namespace: str, name: str, user, private: bool) -> "Repo":
        """A new repository whose main branch starts, as on the Hub, with a .gitattributes commit."""
        with transaction.atomic():
            repo = cls.objects.create(namespace=namespace, name=name, private=private, created_by=user)
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
            self.commits.update(parent=None)
            self.delete()
        kept = set(Entry.objects.filter(sha256__in=contents).values_list("sha256", flat=True))
        kept |= set(LfsObject.objects.filter(oid__in=contents).values_list("oid", flat=True))
        for sha256 in contents - kept:
            storage.object_path(sha256).unlink(missing_ok=True)

    def resolve(self, revision: str) -> "Commit":
        """`main` or a full commit sha of this repository."""
        if revision == "main":
            commit = self.head
        elif COMMIT_SHA.match(revision):
            commit = self.commits.filter(sha=revision).first()
        else:
            commit = None
        if commit is None:
            raise RepoError(f"Invalid rev id: {revision}", 404, "RevisionNotFound")
        return commit

    def commit(
        self,
        user,
        title: str,
        description: str,
        parent: str | None,
        added: dict[str, "FileSpec"],
        deleted_files: frozenset[str] = frozenset(),
        deleted_folders: frozenset[str] = frozenset(),
    ) -> "Commit":
        """Apply all changes as one new commit on main, or none of them. Every added file's
        content must already be in the object store."""
        with transaction.atomic():
            head = Repo.objects.filter(pk=self.pk).values_list("head", flat=True).get()
            head_commit = Commit.objects.filter(pk=head).first() if head else None
            if parent and (head_commit is None or head_commit.sha != parent):
                raise RepoError(f"parent commit {parent} is not the head of main (it moved): fetch and retry", 412)
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
            if not Repo.objects.filter(pk=self.pk, head=head).update(head=commit, updated_at=now):
                raise RepoError("another commit landed at the same time: retry", 409)
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


class LfsObject(models.Model):
    """An LFS object uploaded to a repository. Content is shared on disk, but a repository may
    commit only objects uploaded to it: knowing a sha256 is not enough to read another's file."""

    repo = models.ForeignKey(Repo, on_delete=models.CASCADE, related_name="lfs_objects")
    oid = models.CharField(max_length=64)
    size = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["repo", "oid"], name="lfs_object_once")]
