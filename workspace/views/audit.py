"""The audit trail, for staff: who changed access or money, filtered by action and project, paged."""

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from workspace import audit
from workspace.forms import AuditFilterForm

AUDIT_PAGE_SIZE = 50


@login_required
@require_GET
def audit_log(request: HttpRequest) -> HttpResponse:
    if not request.user.is_staff:
        raise Http404  # as the spend dashboard: others must not learn the page exists
    form = AuditFilterForm(request.GET or None)
    if request.GET and not form.is_valid():
        context = {"form": form, "page": None, "query": ""}
        return render(request, "workspace/audit.html", context, status=400)
    data = form.cleaned_data if form.is_bound else {}
    project = data.get("project")
    events = audit.events(action=data.get("action") or "", project_id=project.pk if project else None)
    page = Paginator(events, AUDIT_PAGE_SIZE).get_page(request.GET.get("page"))
    kept = request.GET.copy()
    kept.pop("page", None)
    return render(request, "workspace/audit.html", {"form": form, "page": page, "query": kept.urlencode()})
