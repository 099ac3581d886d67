"""Token pages: a user issues tokens (the plaintext is shown once), sees them, revokes them."""

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from hub.api.models import ApiToken
from hub.hfapi.converters import own_namespace


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
    return render(request, "tokens/tokens.html", {
        "form": form,
        "plaintext": plaintext,
        "tokens": ApiToken.objects.filter(user=request.user),
        "endpoint": settings.SITE_URL.rstrip("/"),
        "namespace": own_namespace(request.user),
    })


@login_required
@require_POST
def revoke(request: HttpRequest, pk: int) -> HttpResponse:
    token = get_object_or_404(ApiToken, pk=pk, user=request.user, revoked_at__isnull=True)
    token.revoke()
    messages.success(request, f"Token {token} revoked.")
    return redirect("tokens")
