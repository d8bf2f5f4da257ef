"""The account page's API tokens: make one (its secret shown once), see them with their last use, revoke."""

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from workspace.api.models import ApiToken
from workspace.api.tokens import token_create, token_revoke
from workspace.models import MAX_MONTHLY_BUDGET
from workspace.views._common import parse_id


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, error_messages={"required": "Name the token (what uses it)."})
    scopes = forms.MultipleChoiceField(
        choices=ApiToken.Scope.choices,
        widget=forms.CheckboxSelectMultiple,
        initial=[ApiToken.Scope.READ],
        error_messages={"required": "Choose at least one scope."},
    )
    expires_on = forms.DateField(
        label="Expires on", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    monthly_limit = forms.DecimalField(
        label="Monthly spend limit ($)",
        required=False,
        min_value=0,
        max_value=MAX_MONTHLY_BUDGET,
        max_digits=10,
        decimal_places=2,
        help_text="Jobs made with this token stop at this; your own budgets apply as well.",
    )

    def __init__(self, *args, user, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not user.is_staff:  # admin is for staff: not offered to anyone else
            self.fields["scopes"].choices = [
                c for c in ApiToken.Scope.choices if c[0] != ApiToken.Scope.ADMIN
            ]

    def clean_expires_on(self):
        day = self.cleaned_data["expires_on"]
        if day is not None and day <= timezone.localdate():
            raise forms.ValidationError("Choose a day after today.")
        return day


@login_required
@require_http_methods(["GET", "POST"])
def tokens(request: HttpRequest) -> HttpResponse:
    form = TokenForm(request.POST or None, user=request.user)
    secret = None
    if request.method == "POST" and form.is_valid():
        day = form.cleaned_data["expires_on"]
        expires = (
            timezone.make_aware(timezone.datetime.combine(day, timezone.datetime.min.time())) if day else None
        )
        made = token_create(
            user=request.user,
            name=form.cleaned_data["name"],
            scopes=form.cleaned_data["scopes"],
            expires_at=expires,
            monthly_limit=form.cleaned_data["monthly_limit"],
        )
        secret = made.secret  # rendered, never stored: a redirect would lose it
        form = TokenForm(user=request.user)
    status = 400 if request.method == "POST" and secret is None else 200
    return render(
        request,
        "workspace/account_tokens.html",
        {"form": form, "secret": secret, "tokens": request.user.api_tokens.all()},
        status=status,
    )


@login_required
@require_POST
def token_revoke_view(request: HttpRequest) -> HttpResponse:
    """Revoke one of my tokens (form field `token`); another person's is answered like a missing one."""
    token_id = parse_id(request.POST.get("token"))
    token = ApiToken.objects.filter(pk=token_id, user=request.user).first() if token_id else None
    if token is None:
        messages.error(request, "There is no such token among yours.")
    elif token_revoke(token=token):
        messages.success(request, f"Revoked “{token.name}”: it no longer works.")
    return redirect("account_tokens")
