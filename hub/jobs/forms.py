"""The job submission form. It refuses up front what cannot work (an unsupported architecture,
pickle-only weights, a scheme the target GPU cannot run, a recipe that does not parse), so nobody
waits for a worker to tell them. The REST API submits through this same form."""

import re
from collections.abc import Callable

from django import forms
from django.conf import settings
from django.db import transaction
from django.db.models import Max

from common.recipe_args import MODIFIERS, check_arguments
from common.support import SUPPORTED_ARCHITECTURES, min_compute_capability
from hub.catalog import upstream
from hub.catalog.checkpoints import PICKLE_SUFFIXES, CheckpointError, check_config
from hub.catalog.models import BaseModel
from hub.catalog.store import check_repo_name, check_revision
from hub.hfapi.models import Repo
from hub.jobs.models import Job, Recipe
from hub.jobs.presets import GPUS, PRESETS, PROFILES, SUITES
from hub.jobs.targets import TargetRefused, resolve_target
from hub.parsing import ParseError, load_yaml
from hub.suites.definition import SuiteRefused
from hub.suites.models import Suite as UserSuite

# The modifiers the compression library implements (compress.recipe; a test keeps them equal).
# The hub checks their arguments with the library's own function (common.recipe_args) at submission.
KNOWN_MODIFIERS = tuple(MODIFIERS)
# Longer than any real recipe (the presets are under 500 characters), short enough to parse at once.
MAX_RECIPE_CHARS = 64 * 1024
# The schemes compressed-tensors knows (its PRESET_SCHEMES; a test keeps them equal), for the
# same reason: a typo is refused at submission, not hours later on a GPU worker.
KNOWN_SCHEMES = (
    "UNQUANTIZED",
    "W4A16_ASYM",
    "W8A8",
    "INT8",
    "W4AFP8",
    "FP8",
    "FP8_DYNAMIC",
    "FP8_BLOCK",
    "NVFP4A16",
    "NVFP4",
    "MXFP4A16",
    "MXFP4",
    "MXFP4XFP8",
    "MXFP6A16",
    "MXFP6A8",
    "MXFP8A16",
    "MXFP8",
    "W2A4",
    "W2A8",
    "W2A16",
    "W3A4",
    "W3A8",
    "W3A16",
    "W4A4",
    "W4A8",
    "W4A16",
    "W5A8",
    "W5A16",
    "W6A8",
    "W6A16",
    "W7A8",
    "W7A16",
    "W8A16",
)
# Recipe names become part of variant and repository names: the same alphabet.
RECIPE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")


def recipe_schemes(text: str) -> list[str]:
    """Check a pasted recipe has llm-compressor's shape (`<name>_stage:` holding
    `<name>_modifiers:` of known `ModifierName: {arguments}`, each argument within its type and
    range); return the schemes it names."""
    try:
        doc = load_yaml(text, "the recipe")
    except ParseError as exc:
        raise forms.ValidationError(str(exc)) from None
    if not isinstance(doc, dict) or not doc:
        raise forms.ValidationError("the recipe must be a mapping of `<name>_stage:` entries")
    schemes, modifiers = [], 0
    for stage_key, stage in doc.items():
        if not (isinstance(stage_key, str) and stage_key.endswith("_stage") and isinstance(stage, dict)):
            raise forms.ValidationError(
                f"top-level key {stage_key!r} is not a stage: expected `<name>_stage:` holding `<name>_modifiers:` groups"
            )
        for group_key, group in stage.items():
            if group_key == "run_type":
                continue
            if not (isinstance(group_key, str) and group_key.endswith("_modifiers") and isinstance(group, dict)):
                raise forms.ValidationError(f"{stage_key}.{group_key} is not a `<name>_modifiers:` mapping")
            for name, args in group.items():
                if name not in KNOWN_MODIFIERS:
                    raise forms.ValidationError(
                        f"unknown modifier {name!r} in {stage_key}.{group_key}; supported: {', '.join(KNOWN_MODIFIERS)}"
                    )
                if args is not None and not isinstance(args, dict):
                    raise forms.ValidationError(f"the arguments of {name} must be a mapping")
                args = args or {}
                try:
                    check_arguments(name, args, f"{stage_key}.{group_key}.{name}")
                except (ValueError, NotImplementedError) as exc:
                    raise forms.ValidationError(str(exc)) from None
                modifiers += 1
                named = args.get("scheme")
                for scheme in [named] if isinstance(named, str) else named if isinstance(named, dict) else []:
                    if not isinstance(scheme, str) or scheme.upper() not in KNOWN_SCHEMES:
                        raise forms.ValidationError(
                            f"unknown scheme {scheme!r} in {name}; supported: {', '.join(KNOWN_SCHEMES)}"
                        )
                if isinstance(named, str):
                    schemes.append(named)
                if args.get("mask_structure") == "2:4":
                    schemes.append("2:4")
    if not modifiers:
        raise forms.ValidationError("the recipe has no modifiers")
    return schemes


def inspect_remote(repo_id: str, revision: str) -> str | None:
    """Refuse a Hub repository that cannot work (pickle-only weights, unsupported architecture),
    asking the configured endpoint. Returns a note when the endpoint cannot be reached: the
    fetch stage makes the same checks before downloading any weight."""
    import tempfile

    import httpx2  # huggingface_hub's HTTP client, whose connection errors it lets through
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    token = upstream.token_for(repo_id)
    api = HfApi(endpoint=settings.HF_ENDPOINT, token=token)
    try:
        info = api.model_info(repo_id, revision=revision or None, timeout=5)
    except RepositoryNotFoundError:
        raise forms.ValidationError(
            f"{repo_id}: no such repository on the Hub (or it is private){upstream.refusal_hint(repo_id)}"
        ) from None
    except RevisionNotFoundError:
        raise forms.ValidationError(f"{repo_id}: no revision {revision!r}") from None
    except (OfflineModeIsEnabled, HfHubHTTPError, OSError, httpx2.HTTPError) as exc:  # httpx2: unreachable endpoint
        return f"the Hub could not be asked about {repo_id} ({type(exc).__name__}); the fetch stage will check it"
    names = [s.rfilename for s in info.siblings or []]
    if not any(n.endswith(".safetensors") for n in names):
        pickles = [n for n in names if n.lower().endswith(PICKLE_SUFFIXES)]
        if pickles:
            raise forms.ValidationError(
                f"{repo_id} has only pickle weights ({', '.join(pickles[:3])}): loading them can run arbitrary code; "
                "the hub accepts safetensors weights only"
            )
        raise forms.ValidationError(f"{repo_id} has no safetensors weights")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            config = hf_hub_download(
                repo_id, "config.json", revision=info.sha, local_dir=tmp, endpoint=settings.HF_ENDPOINT, token=token
            )
            check_config(config)
        except CheckpointError as exc:
            raise forms.ValidationError(f"{repo_id}: {exc}") from None
        except (HfHubHTTPError, OSError) as exc:
            return f"config.json of {repo_id} could not be read ({type(exc).__name__}); the fetch stage will check it"
    return None


class JobForm(forms.Form):
    base = forms.ModelChoiceField(
        queryset=BaseModel.objects.none(),
        required=False,
        label="Imported or fetched model",
        empty_label="(a Hugging Face model instead)",
    )
    hf_id = forms.CharField(
        required=False,
        max_length=200,
        label="Hugging Face model id, or a repository of this hub",
        widget=forms.TextInput(attrs={"placeholder": "HuggingFaceTB/SmolLM2-135M-Instruct"}),
    )
    revision = forms.CharField(required=False, max_length=200, label="revision", initial="main")
    presets = forms.MultipleChoiceField(
        required=False,
        label="Recipe presets",
        widget=forms.CheckboxSelectMultiple,
        choices=[(name, f"{name}: {p.description}") for name, p in PRESETS.items()],
    )
    recipe_yaml = forms.CharField(
        required=False,
        max_length=MAX_RECIPE_CHARS,
        label="or a recipe (llm-compressor YAML)",
        widget=forms.Textarea(attrs={"rows": 8, "spellcheck": "false"}),
    )
    recipe_name = forms.CharField(required=False, max_length=80, label="name for the pasted recipe")
    # a built-in suite's name, or `owner/name[@version]` of a user suite (hub.suites) the
    # submitter may read; the page offers each by its exact version
    suite = forms.CharField(required=False, max_length=200, label="Evaluation suite", widget=forms.Select)
    benchmark_profile = forms.ChoiceField(
        required=False, label="Benchmark profile", choices=[("", "none (skip benchmarks)")] + list(PROFILES.items())
    )
    gpu = forms.ChoiceField(
        required=False, label="Target GPU", choices=[("", "no GPU target (CPU, or any GPU)")] + list(GPUS.items())
    )
    publish_targets = forms.CharField(
        required=False,
        label="Also publish to (one per line: [endpoint URL] owner/name)",
        widget=forms.Textarea(attrs={"rows": 2}),
    )
    private = forms.BooleanField(required=False, label="private (only you and staff see the job and its models)")
    rerun = forms.BooleanField(required=False, label="run again, even if an identical job exists")

    def __init__(self, *args, user, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.user = user
        self.notes: list[str] = []
        # an identical job already queued, running or done: refused, or run again when asked
        self.duplicate: Job | None = None
        self.fields["base"].queryset = BaseModel.objects.visible_to(user).order_by("name")
        # the user suite version `suite` names, once cleaned
        self.user_suite: UserSuite | None = None
        self.fields["suite"].widget.choices = [
            ("", "none (skip validation)"),
            *SUITES.items(),
            *(
                (s.reference, f"{s.reference}: {s.description[:100]}" if s.description else s.reference)
                for s in UserSuite.objects.visible_to(user)
                .select_related("owner")
                .order_by("owner__username", "name", "-version")
            ),
        ]

    def _checked(self, field: str, check: Callable[[str], object]) -> str:
        value = self.cleaned_data[field].strip()
        if value:
            try:
                check(value)
            except CheckpointError as exc:
                raise forms.ValidationError(str(exc)) from None
        return value

    def clean_hf_id(self) -> str:
        return self._checked("hf_id", check_repo_name)

    def clean_revision(self) -> str:
        return self._checked("revision", check_revision)

    def clean_suite(self) -> str:
        """A built-in suite's name as it is; a user suite's reference as the exact version it
        resolves to now, which the job keeps (its data re-checked as readable by the submitter)."""
        name = self.cleaned_data["suite"].strip()
        try:
            self.user_suite = UserSuite.objects.for_job(name, self.user)
        except SuiteRefused as exc:
            raise forms.ValidationError(str(exc)) from None
        return self.user_suite.reference if self.user_suite else name

    def clean_recipe_name(self) -> str:
        name = self.cleaned_data["recipe_name"].strip()
        if name and not RECIPE_NAME.match(name):
            raise forms.ValidationError(
                f"invalid recipe name {name!r}: use letters, digits, '.', '_' and '-' (it becomes part of model names)"
            )
        return name

    def clean_recipe_yaml(self) -> str:
        text = self.cleaned_data["recipe_yaml"].strip()
        self.yaml_schemes = recipe_schemes(text) if text else []
        return text

    def clean_publish_targets(self) -> list[str]:
        lines = [line.strip() for line in self.cleaned_data["publish_targets"].splitlines() if line.strip()]
        for line in lines:
            try:
                resolve_target(line, self.user)
            except TargetRefused as exc:
                raise forms.ValidationError(str(exc)) from None
        return lines

    def clean(self) -> dict:
        data = super().clean()
        base, hf_id = data.get("base"), data.get("hf_id")
        known = None  # the catalog's base for hf_id, when an earlier job fetched it
        if base and hf_id:
            self.add_error("hf_id", "choose an imported model or a Hugging Face id, not both")
        elif not base and not hf_id and "hf_id" not in self.errors:
            self.add_error("hf_id", "choose an imported model or give a Hugging Face id")
        if base:
            self.check_base(base, data.get("presets") or [])
        elif hf_id and not self.errors:
            data["repo_here"] = self.readable_repo(hf_id)
            known = BaseModel.objects.filter(
                hf_repo_id=hf_id, revision=data.get("revision") or "main", on_this_hub=data["repo_here"] is not None
            ).first()
            if known:
                self.check_base(known, data.get("presets") or [])
            elif data["repo_here"]:
                self.notes.append(f"{hf_id} is a repository of this hub: the job fetches it from here")
            else:
                note = inspect_remote(hf_id, data.get("revision") or "main")
                if note:
                    self.notes.append(note)
        unchosen = not data.get("presets") and not data.get("recipe_yaml")
        if unchosen and "recipe_yaml" not in self.errors and "presets" not in self.errors:
            self.add_error("presets", "choose at least one recipe preset, or paste a recipe")
        self.check_size(
            len(data.get("presets") or []) + bool(data.get("recipe_yaml")),
            data.get("suite", ""),
            data.get("benchmark_profile", ""),
        )
        if data.get("gpu"):
            self.check_hardware(float(data["gpu"]), data.get("presets") or [], getattr(self, "yaml_schemes", []))
        if not self.errors:
            self.check_duplicate(base or known)
        return data

    def check_duplicate(self, base: BaseModel | None) -> None:
        """Refuse what an earlier job of the user's sight already ran or is running, unless asked
        to run it again: a second identical job costs the same hours and shows its numbers twice."""
        data = self.cleaned_data
        if base is None:
            return
        self.duplicate = Job.objects.visible_to(self.user).identical(
            base,
            data["presets"],
            data["recipe_yaml"],
            data["suite"],
            data["benchmark_profile"],
            data["publish_targets"],
        )
        if self.duplicate and not data.get("rerun"):
            self.add_error(
                None,
                f"job {self.duplicate.pk} ({self.duplicate.status}) already runs this: the same base, recipes, "
                'suite, benchmark profile and publish targets. Open it, or tick "run again" to run it anyway',
            )

    def readable_repo(self, repo_id: str) -> Repo | None:
        """This hub's repository of that id, if the submitter may read it; None for an id that
        names none here (it then names one of the configured Hub endpoint). One hidden from them
        is not found: it must not go upstream instead, where the same id may be another's."""
        namespace, _, name = repo_id.rpartition("/")
        here = Repo.objects.filter(type=Repo.MODEL, namespace=namespace, name=name)
        repo = here.visible_to(self.user).first()
        if repo is None and here.exists():
            raise forms.ValidationError({"hf_id": f"{repo_id}: not found"})
        return repo

    def check_base(self, base: BaseModel, presets: list[str]) -> None:
        if base.architecture and base.architecture not in SUPPORTED_ARCHITECTURES:
            self.add_error(
                "base",
                f"{base.name} is a {base.architecture}; supported architectures: {', '.join(SUPPORTED_ARCHITECTURES)}",
            )
        names = [f["path"] for f in base.files]
        if names and not any(n.endswith(".safetensors") for n in names):
            self.add_error(
                "base", f"{base.name} has no safetensors weights (pickle files are refused: loading them can run code)"
            )
        for name in presets:
            if why := PRESETS[name].fits(base.config):
                self.add_error("presets", f"{name} cannot quantize {base.name}: {why}")

    def check_size(self, recipes: int, suite: str, benchmark_profile: str) -> None:
        """A job has at most MAX_STAGES_PER_JOB stages (staff excepted): waiting never makes a
        bigger one fit, so this is a plain form error, not a rate limit."""
        stages, limit = Job.planned_stages(recipes, suite, benchmark_profile), settings.MAX_STAGES_PER_JOB
        if stages > limit and not self.user.is_staff:
            self.add_error(
                None,
                f"this job would have {stages} stages; a job may have at most {limit}: "
                "choose fewer recipes, or skip validation or benchmarks",
            )

    def check_hardware(self, gpu: float, chosen: list[str], yaml_schemes: list[str]) -> None:
        label = GPUS[f"{gpu:.1f}"]
        for name in chosen:
            need = PRESETS[name].min_compute_capability
            if need and need > gpu:
                self.add_error(
                    "presets", f"{name} needs compute capability {need:g} or newer; the target GPU is {label}"
                )
        for scheme in yaml_schemes:
            need = min_compute_capability(scheme)
            if need and need > gpu:
                self.add_error(
                    "recipe_yaml",
                    f"the recipe's {scheme} needs compute capability {need:g} or newer; the target GPU is {label}",
                )

    @transaction.atomic
    def submit(self) -> Job:
        """Create the job, within the submitter's limits (Job.admit raises QuotaExceeded)."""
        Job.admit(self.user)
        data = self.cleaned_data
        base = data["base"]
        if base is None:
            revision = data["revision"] or "main"
            here = data.get("repo_here")
            base = BaseModel.objects.filter(
                hf_repo_id=data["hf_id"], revision=revision, on_this_hub=here is not None
            ).first()
            if base is None:
                name = data["hf_id"] if revision == "main" else f"{data['hf_id']}-{revision[:12]}"
                taken = set(BaseModel.objects.filter(name__startswith=name).values_list("name", flat=True))
                name = next(n for n in [name] + [f"{name}-{i}" for i in range(2, len(taken) + 2)] if n not in taken)
                base = BaseModel.objects.create(
                    name=name,
                    hf_repo_id=data["hf_id"],
                    revision=revision,
                    owner=self.user,
                    on_this_hub=here is not None,
                    # a private repository's files must not show in the public catalog
                    private=data["private"] or bool(here and here.private),
                )
        recipes = [Recipe.for_preset(name) for name in data["presets"]]
        if data["recipe_yaml"]:
            name = data["recipe_name"] or "custom"
            version = (Recipe.objects.filter(name=name).aggregate(v=Max("version"))["v"] or 0) + 1
            recipes.append(
                Recipe.objects.create(
                    name=name,
                    version=version,
                    yaml=data["recipe_yaml"],
                    owner=self.user,
                    scheme=" + ".join(dict.fromkeys(self.yaml_schemes)),
                )
            )
        if self.user_suite is not None:
            # held to the end of the job's transaction, so that its owner cannot replace it in
            # between; replaced since it was checked, it is checked again
            locked = UserSuite.objects.select_for_update().select_related("owner").get(pk=self.user_suite.pk)
            if locked.content_hash != self.user_suite.content_hash:
                locked.check_usable_by(self.user)
        return Job.submit(
            base_model=base,
            recipes=recipes,
            owner=self.user,
            suite=data["suite"],
            user_suite=self.user_suite,
            benchmark_profile=data["benchmark_profile"],
            publish_targets=data["publish_targets"],
            private=data["private"],
            rerun_of=self.duplicate,
        )
