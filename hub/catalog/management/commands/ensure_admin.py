import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "On a fresh local hub (DEBUG, no users yet), create an 'admin' superuser and print its password."

    def handle(self, **options) -> None:
        User = get_user_model()
        if not settings.DEBUG or User.objects.exists():
            return
        password = secrets.token_urlsafe(12)
        User.objects.create_superuser("admin", "", password)
        path = settings.VAR_DIR / "admin-password"
        path.write_text(password + "\n")
        path.chmod(0o600)
        self.stdout.write(f"created superuser 'admin' with password {password} (also in {path})")
