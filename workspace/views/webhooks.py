"""Webhook endpoints on the project's settings page: add, remove, rotate the secret, test, redeliver.

Owners only, like the rest of the settings page; each view parses, calls one service in
workspace/webhooks.py and goes back to the settings page (or re-renders it with the form's errors).
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from workspace import webhooks
from workspace.access import project_access
from workspace.forms import WebhookForm
from workspace.models import Role
from workspace.views.projects import render_settings
from workspace.webhook_models import WebhookDelivery, WebhookEndpoint


def _settings(project_id: int) -> HttpResponse:
    return redirect(reverse("project_settings", args=[project_id]) + "#webhooks")


@login_required
@require_POST
def webhook_add(request: HttpRequest, project_id: int) -> HttpResponse:
    access = project_access(request.user, project_id, needs=Role.OWNER, writes=True)
    form = WebhookForm(request.POST)
    if form.is_valid():
        try:
            webhooks.endpoint_add(
                project=access.project,
                url=form.cleaned_data["url"],
                events=form.cleaned_data["events"],
                description=form.cleaned_data["description"],
                actor=request.user,
            )
        except webhooks.WebhookRefused as refusal:
            form.add_error("url", str(refusal))
        else:
            messages.success(request, "Webhook added. Copy its signing secret below.")
            return _settings(project_id)
    return render_settings(request, access, webhook_form=form, status=400)


@login_required
@require_POST
def webhook_remove(request: HttpRequest, project_id: int, endpoint_id: int) -> HttpResponse:
    access = project_access(request.user, project_id, needs=Role.OWNER, writes=True)
    try:
        endpoint = webhooks.endpoint_remove(
            project=access.project, endpoint_id=endpoint_id, actor=request.user
        )
    except WebhookEndpoint.DoesNotExist:
        raise Http404 from None
    messages.success(request, f"Webhook to {endpoint.url} removed.")
    return _settings(project_id)


@login_required
@require_POST
def webhook_rotate(request: HttpRequest, project_id: int, endpoint_id: int) -> HttpResponse:
    access = project_access(request.user, project_id, needs=Role.OWNER, writes=True)
    try:
        endpoint = webhooks.endpoint_rotate(
            project=access.project, endpoint_id=endpoint_id, actor=request.user
        )
    except WebhookEndpoint.DoesNotExist:
        raise Http404 from None
    messages.success(
        request,
        f"New secret for {endpoint.url}. Messages are signed with the old one too until "
        f"{endpoint.previous_secret_expires_at:%Y-%m-%d %H:%M} UTC.",
    )
    return _settings(project_id)


@login_required
@require_POST
def webhook_ping(request: HttpRequest, project_id: int, endpoint_id: int) -> HttpResponse:
    access = project_access(request.user, project_id, needs=Role.OWNER, writes=True)
    try:
        webhooks.endpoint_ping(project=access.project, endpoint_id=endpoint_id)
    except WebhookEndpoint.DoesNotExist:
        raise Http404 from None
    messages.success(request, "Test message queued; its attempt appears in the log below.")
    return _settings(project_id)


@login_required
@require_POST
def webhook_redeliver(request: HttpRequest, project_id: int, delivery_id: int) -> HttpResponse:
    access = project_access(request.user, project_id, needs=Role.OWNER, writes=True)
    try:
        webhooks.delivery_redeliver(project=access.project, delivery_id=delivery_id)
    except WebhookDelivery.DoesNotExist:
        raise Http404 from None
    except webhooks.WebhookRefused as refusal:
        messages.error(request, str(refusal))
    else:
        messages.success(request, "Sending it again.")
    return _settings(project_id)
