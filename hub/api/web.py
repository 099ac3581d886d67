"""Token pages: a user issues tokens (the plaintext is shown once), sees them, revokes them."""

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from hub.api.models import ApiToken, EndpointCredential
from hub.hfapi.converters import own_namespace
from hub.jobs.targets import TargetRefused, allowed_endpoints, save_credential


class CredentialForm(forms.Form):
    """The user's own write token for an endpoint jobs may publish to; the field never shows it back."""

    endpoint = forms.ChoiceField(choices=[])
    token = forms.CharField(max_length=500, widget=forms.PasswordInput(render_value=False))

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["endpoint"].choices = [(e, e) for e in sorted(allowed_endpoints())]


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, widget=forms.TextInput(attrs={"placeholder": "laptop, CI, ..."}))
    scope = forms.ChoiceField(choices=ApiToken.Scope.choices, initial=ApiToken.Scope.READ)


@login_required
def tokens(request: HttpRequest) -> HttpResponse:
    form = TokenForm(request.POST or None)
    plaintext = None
    if request.method == "POST" and form.is_valid():
        _, plaintext = ApiToken.issue(request.user, form.cleaned_data["name"], form.cleaned_data["scope"])
        form = TokenForm()
    return render(
        request,
        "tokens/tokens.html",
        {
            "form": form,
            "plaintext": plaintext,
            "tokens": ApiToken.objects.filter(user=request.user),
            "endpoint": settings.SITE_URL.rstrip("/"),
            "namespace": own_namespace(request.user),
            "credential_form": CredentialForm() if allowed_endpoints() else None,
            "credentials": EndpointCredential.objects.filter(user=request.user),
        },
    )


@login_required
@require_POST
def credential_set(request: HttpRequest) -> HttpResponse:
    form = CredentialForm(request.POST)
    if form.is_valid():
        try:
            credential = save_credential(request.user, form.cleaned_data["endpoint"], form.cleaned_data["token"])
            messages.success(
                request, f"Your token for {credential.endpoint} is kept; jobs you submit may publish there."
            )
        except TargetRefused as exc:
            messages.error(request, str(exc))
    else:
        messages.error(request, "Choose an endpoint and give a token.")
    return redirect("tokens")


@login_required
@require_POST
def credential_delete(request: HttpRequest, pk: int) -> HttpResponse:
    credential = get_object_or_404(EndpointCredential, pk=pk, user=request.user)
    credential.delete()
    messages.success(request, f"Your token for {credential.endpoint} is forgotten.")
    return redirect("tokens")


@login_required
@require_POST
def revoke(request: HttpRequest, pk: int) -> HttpResponse:
    token = get_object_or_404(ApiToken, pk=pk, user=request.user, revoked_at__isnull=True)
    token.revoke()
    messages.success(request, f"Token {token} revoked.")
    return redirect("tokens")
