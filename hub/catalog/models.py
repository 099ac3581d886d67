from pathlib import Path

from django.conf import settings
from django.db import models
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from hub.catalog.checkpoints import CheckpointInfo
from hub.hfapi.models import Repo


def admitted_by_source(user, base: str = "") -> Q:
    """Rows whose base model, reached through the lookup `base` ("" for a BaseModel itself), came
    from no repository of this hub or from one `user` may read now. A catalog copy is checked
    against its source at every read, not when it was made: the repository's owner may make it
    private, or delete it, long after a job copied it, and the copy must follow."""
    prefix = f"{base}__" if base else ""
    source = Repo.objects.visible_to(user).with_repo_id().filter(full_id=OuterRef(f"{prefix}hf_repo_id"))
    return Q(**{f"{prefix}on_this_hub": False}) | Q(Exists(source))


class OwnedQuerySet(models.QuerySet):
    """Rows with an owner and a `private` flag, and a base model: who may see them and who may
    manage them, decided here for every page, form and API that lists or changes them."""

    # the lookup from a row to its base model ("" for a BaseModel itself; None: rows without one)
    base_lookup: str | None = ""

    def visible_to(self, user) -> "OwnedQuerySet":
        """Public rows, plus the user's own; staff see everything. A base model copied from a
        repository of this hub, and what was derived from it, only while the user may read that
        repository."""
        if user.is_staff:
            return self
        source = admitted_by_source(user, self.base_lookup) if self.base_lookup is not None else Q()
        if user.is_authenticated:
            return self.filter(Q(private=False) | Q(owner=user), source)
        return self.filter(source, private=False)

    def manageable_by(self, user) -> "OwnedQuerySet":
        """The rows `user` may change (cancel, retry, delete): their own, or any for staff."""
        if not user.is_authenticated:
            return self.none()
        return self if user.is_staff else self.filter(owner=user)


class VariantQuerySet(OwnedQuerySet):
    base_lookup = "base"


def sources_state() -> str:
    """The visibility of every repository of this hub that a catalog row was copied from, as one
    string that changes when any of them turns private or public or goes away: for caches of what
    `admitted_by_source` lets through."""
    copied = BaseModel.objects.filter(on_this_hub=True).values("hf_repo_id")
    state = Repo.objects.with_repo_id().filter(full_id__in=copied).order_by("pk").values_list("pk", "private")
    return ",".join(f"{pk}{'p' if private else ''}" for pk, private in state)


class BaseModel(models.Model):
    """A source checkpoint: an HF repo at a resolved revision, or an imported local directory."""

    objects = OwnedQuerySet.as_manager()

    class Status(models.TextChoices):
        PENDING = "pending", "pending fetch"
        READY = "ready"
        FAILED = "failed"

    name = models.CharField(max_length=200, unique=True, help_text="owner/name, as on the Hub")
    hf_repo_id = models.CharField(max_length=200, blank=True, db_index=True)
    revision = models.CharField(max_length=200, blank=True, help_text="revision asked for")
    on_this_hub = models.BooleanField(
        default=False, help_text="hf_repo_id is a repository of this hub: fetch downloads it through the hub's own API"
    )
    resolved_sha = models.CharField(max_length=64, blank=True, help_text="commit the revision resolved to")
    source_path = models.CharField(max_length=1000, blank=True, help_text="imported local directory")
    local_path = models.CharField(max_length=1000, blank=True, help_text="verified snapshot on this hub")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    architecture = models.CharField(max_length=100, blank=True)
    model_type = models.CharField(max_length=50, blank=True)
    num_parameters = models.BigIntegerField(null=True, blank=True)
    dtype = models.CharField(max_length=20, blank=True)
    license = models.CharField(max_length=100, blank=True)
    size_bytes = models.BigIntegerField(null=True, blank=True)
    config = models.JSONField(default=dict, blank=True)
    files = models.JSONField(default=list, blank=True, help_text="[{path, size, sha256}]")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    private = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    fetched_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name

    def record_checkpoint(self, info: CheckpointInfo, path: Path) -> None:
        """Fill the row from a verified snapshot stored at `path` (named by its content)."""
        self.architecture = info.architecture
        self.model_type = info.model_type
        self.config = info.config
        self.num_parameters = info.num_parameters
        self.dtype = info.dtype
        self.size_bytes = info.size_bytes
        self.license = self.license or info.license
        self.files = info.files
        self.local_path = str(path)
        if not self.hf_repo_id:
            self.resolved_sha = path.name
        self.status = self.Status.READY
        self.fetched_at = timezone.now()
        self.save()


class Variant(models.Model):
    """The catalog entry of one compressed model produced by a job's compress stage."""

    objects = VariantQuerySet.as_manager()

    class Gate(models.TextChoices):
        """The validation verdict (evals.recovery decides it, per task and overall), and what every
        page, card and API text calls it: "validated" only when every task's 95% interval of the
        recovery clears the threshold."""

        PENDING = "pending", "validation pending"
        VALIDATED = "validated", "validated"
        INCONCLUSIVE = "inconclusive", "inconclusive at this sample size"
        FAILED = "failed", "failed"

    base = models.ForeignKey(BaseModel, on_delete=models.PROTECT, related_name="variants")
    recipe = models.ForeignKey("jobs.Recipe", on_delete=models.PROTECT, related_name="variants")
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="variants")
    name = models.CharField(max_length=200, unique=True)
    scheme = models.CharField(max_length=50, blank=True)
    local_path = models.CharField(max_length=1000, blank=True)
    files = models.JSONField(default=list, blank=True, help_text="[{path, size, sha256}]")
    size_bytes = models.BigIntegerField(null=True, blank=True)
    compression_report = models.JSONField(default=dict, blank=True)
    gate = models.CharField(max_length=16, choices=Gate.choices, default=Gate.PENDING)
    gate_report = models.JSONField(default=dict, blank=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    private = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name


class Publication(models.Model):
    LOCAL = "local"  # the endpoint of a publication to this hub

    variant = models.ForeignKey(Variant, on_delete=models.CASCADE, related_name="publications")
    endpoint = models.CharField(max_length=500, help_text="'local' for this hub, else the HF endpoint URL")
    repo_id = models.CharField(max_length=200)
    commit_sha = models.CharField(max_length=64)
    url = models.CharField(max_length=1000, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.repo_id}@{self.commit_sha[:10]} ({self.endpoint})"
