import hashlib
import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone

TOKEN_PREFIX = "hub_"


def digest(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


class ApiToken(models.Model):
    """A per-user bearer token. Only its sha256 is stored; the plaintext is shown once."""

    class Scope(models.TextChoices):
        READ = "read", "read (download private repos, read jobs)"
        WRITE = "write", "write (also submit jobs, upload, publish)"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12, help_text="the first characters, to tell tokens apart")
    digest = models.CharField(max_length=64, unique=True)
    scope = models.CharField(max_length=8, choices=Scope.choices, default=Scope.READ)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @classmethod
    def issue(cls, user, name: str, scope: str = Scope.READ) -> tuple["ApiToken", str]:
        plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token = cls.objects.create(user=user, name=name, prefix=plaintext[:12], digest=digest(plaintext), scope=scope)
        return token, plaintext

    @classmethod
    def authenticate(cls, plaintext: str) -> "ApiToken | None":
        """The live token for this plaintext, or None (unknown, revoked, or inactive user)."""
        token = (
            cls.objects.select_related("user")
            .filter(digest=digest(plaintext), revoked_at__isnull=True, user__is_active=True)
            .first()
        )
        if token:
            cls.objects.filter(pk=token.pk).update(last_used_at=timezone.now())
        return token

    @property
    def can_write(self) -> bool:
        return self.scope == self.Scope.WRITE

    def revoke(self) -> None:
        self.revoked_at = timezone.now()
        self.save(update_fields=["revoked_at"])


def bearer_token(request) -> ApiToken | None:
    """The token an `Authorization: Bearer ...` header carries, if it is live."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return ApiToken.authenticate(value.strip())


class EndpointCredential(models.Model):
    """A user's own write token for another Hub endpoint that an operator allows jobs to publish
    to (HUB_PUBLISH_ALLOWED_ENDPOINTS). The publish stage sends it to that endpoint only, for
    that user's jobs only; it is kept as given, since it must be sent, and never shown again."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="endpoint_credentials")
    endpoint = models.CharField(max_length=300, help_text="scheme://host[:port], as normalized by hub.jobs.targets")
    token = models.CharField(max_length=500)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["endpoint"]
        constraints = [
            models.UniqueConstraint(fields=["user", "endpoint"], name="one_credential_per_user_and_endpoint")
        ]

    def __str__(self) -> str:
        return f"{self.user} at {self.endpoint}"
