from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from hub.catalog.models import BaseModel
from hub.jobs.models import Job, Recipe
from hub.jobs.presets import PRESETS
from hub.suites.definition import SuiteRefused
from hub.suites.models import Suite


class Command(BaseCommand):
    # an operator's tool: the per-user limits of the web form and the API (Job.admit) do not apply
    help = "Submit a compression job for a base model already in the catalog (no per-user limits apply)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("base", help="base model name (see import_model)")
        parser.add_argument("--recipe", action="append", required=True, help="preset name; repeat for several")
        parser.add_argument(
            "--suite",
            default="quick",
            help="eval suite: a built-in one, or owner/name[@version] ('' to skip validation)",
        )
        parser.add_argument("--profile", default="chat", help="benchmark profile ('' to skip benchmarks)")
        parser.add_argument("--user", help="submitting user's username")

    def handle(self, base: str, recipe: list[str], suite: str, profile: str, user: str | None, **options) -> None:
        try:
            base_model = BaseModel.objects.get(name=base)
        except BaseModel.DoesNotExist:
            raise CommandError(f"no base model named {base!r}; import one with `manage.py import_model PATH`") from None
        try:
            recipes = [Recipe.for_preset(name) for name in recipe]
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        for name in recipe:
            if why := PRESETS[name].fits(base_model.config):
                raise CommandError(f"{name} cannot quantize {base_model.name}: {why}")
        owner = get_user_model().objects.get(username=user) if user else None
        try:
            user_suite = Suite.objects.for_job(suite, owner)
        except SuiteRefused as exc:
            raise CommandError(str(exc)) from None
        job = Job.submit(
            base_model=base_model,
            recipes=recipes,
            owner=owner,
            suite=user_suite.reference if user_suite else suite,
            user_suite=user_suite,
            benchmark_profile=profile,
        )
        self.stdout.write(f"submitted job {job.pk}: {', '.join(s.name for s in job.stages.all())}")
