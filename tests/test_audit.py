"""The audit trail: what writes it (member services, image delete/restore, the admin's prices, budgets
and members), that it only grows, and the staff page that reads it."""

from decimal import Decimal

import pytest
from django.urls import reverse

from tests.factories import ImageFactory, ProjectFactory
from workspace import audit, projects, review
from workspace.models import AuditEvent, Budget, Membership, Price, Role

pytestmark = pytest.mark.django_db


def only(action: str) -> AuditEvent:
    return AuditEvent.objects.get(action=action)


def test_member_changes_record_who_what_and_before_and_after(cast, project, make_user):
    dana = make_user("dana")
    added = projects.member_add(project=project, user=dana, role=Role.VIEWER, actor=cast.alice)
    projects.member_set_role(project=project, membership_id=added.pk, role=Role.EDITOR, actor=cast.alice)
    projects.member_remove(project=project, membership_id=added.pk, actor=cast.alice)

    event = only("member.added")
    assert (event.actor, event.actor_name, event.project, event.target_type, event.target_id) == (
        cast.alice,
        "alice",
        project,
        "membership",
        str(added.pk),
    )
    assert (event.before, event.after) == (None, {"user": "dana", "role": "viewer"})
    role = only("member.role")
    assert (role.before, role.after) == (
        {"user": "dana", "role": "viewer"},
        {"user": "dana", "role": "editor"},
    )
    removed = only("member.removed")
    assert (removed.before, removed.after) == ({"user": "dana", "role": "editor"}, None)
    # A refused change records nothing.
    mine = Membership.objects.get(project=project, user=cast.alice)
    with pytest.raises(projects.MembershipRefused):
        projects.member_set_role(project=project, membership_id=mine.pk, role=Role.VIEWER, actor=cast.alice)
    assert AuditEvent.objects.count() == 3


def test_the_members_page_records_the_signed_in_owner(client, cast, project):
    client.force_login(cast.alice)
    vera = Membership.objects.get(project=project, user=cast.vera)
    client.post(reverse("member_role", args=[project.pk, vera.pk]), {"role": "editor"})
    event = only("member.role")
    assert (event.actor, event.after["role"]) == (cast.alice, "editor")


def test_deleting_and_restoring_an_image_are_recorded(cast, project):
    image = ImageFactory(job__project=project, job__author=cast.bob)
    review.image_delete(image=image, user=cast.bob)
    assert review.image_delete(image=image, user=cast.bob) is False  # twice: one event
    image.refresh_from_db()
    review.image_restore(image=image, user=cast.alice)
    deleted, restored = only("image.deleted"), only("image.restored")
    assert (deleted.actor, deleted.project, deleted.before) == (cast.bob, project, {"deleted_at": None})
    assert deleted.after["deleted_at"]
    assert (restored.actor, restored.after) == (cast.alice, {"deleted_at": None})


PRICE = {
    "model": "gpt-image-2.5-sunburst",
    "effective_from": "2026-12-01",  # the migration seeds 2026-09-08
    "text_input": "5",
    "cached_text_input": "1.25",
    "image_input": "8",
    "cached_image_input": "2",
    "image_output": "30",
    "text_output": "10",
    "batch_factor": "0.5",  # the form's initial value
    "note": "",
}


def test_prices_and_budgets_changed_in_the_admin_are_recorded(admin_client, admin_user, cast, project):
    admin_client.post(reverse("admin:workspace_price_add"), PRICE)
    price = Price.objects.get(model=PRICE["model"], effective_from=PRICE["effective_from"])
    admin_client.post(
        reverse("admin:workspace_price_change", args=[price.pk]), PRICE | {"image_output": "40"}
    )
    added, changed = AuditEvent.objects.filter(action="price.changed").order_by("id")
    assert (added.actor, added.before, Decimal(added.after["image_output"])) == (admin_user, None, 30)
    assert (Decimal(changed.before["image_output"]), Decimal(changed.after["image_output"])) == (30, 40)
    admin_client.post(reverse("admin:workspace_price_delete", args=[price.pk]), {"post": "yes"})
    assert only("price.deleted").before["model"] == PRICE["model"]

    admin_client.post(
        reverse("admin:workspace_budget_add"),
        {"scope": "project", "project": project.pk, "monthly_limit": "50"},
    )
    budget = Budget.objects.get(project=project)
    admin_client.post(
        reverse("admin:workspace_budget_change", args=[budget.pk]),
        {"scope": "project", "project": project.pk, "monthly_limit": "75"},
    )
    first, second = AuditEvent.objects.filter(action="budget.changed").order_by("id")
    assert (first.project, first.before, Decimal(first.after["monthly_limit"])) == (
        project,
        None,
        Decimal(50),
    )
    assert (Decimal(second.before["monthly_limit"]), Decimal(second.after["monthly_limit"])) == (50, 75)
    # Saving without a change is not an event.
    admin_client.post(
        reverse("admin:workspace_budget_change", args=[budget.pk]),
        {"scope": "project", "project": project.pk, "monthly_limit": "75"},
    )
    assert AuditEvent.objects.filter(action="budget.changed").count() == 2


def test_budgets_set_on_the_dashboard_are_recorded_with_who_and_the_limits(client, cast, project):
    client.force_login(cast.sam)
    url = reverse("spend_budget_set")
    client.post(url, {"scope": "project", "project": project.pk, "monthly_limit": "50"})
    client.post(url, {"scope": "project", "project": project.pk, "monthly_limit": "20.50"})
    client.post(url, {"scope": "project", "project": project.pk, "monthly_limit": ""})

    changes = list(AuditEvent.objects.filter(action="budget.changed").order_by("id"))
    assert [(e.actor, e.project, e.before, e.after) for e in changes] == [
        (cast.sam, project, None, {"monthly_limit": "50.00"}),
        (cast.sam, project, {"monthly_limit": "50.00"}, {"monthly_limit": "20.50"}),
    ]
    removed = only("budget.deleted")
    assert (removed.actor, removed.before, removed.after) == (cast.sam, {"monthly_limit": "20.50"}, None)
    assert removed.target_id == changes[0].target_id  # the same budget row throughout
    assert not Budget.objects.filter(project=project).exists()


def test_the_trail_only_grows(cast, project):
    event = audit.record(
        actor=cast.alice,
        action="auth.lockout",
        target=("username", "mallory"),
        before=None,
        after={"until": "x"},
    )
    assert (event.target_type, event.target_id, event.actor_name) == ("username", "mallory", "alice")
    with pytest.raises(ValueError, match="append-only"):
        event.save()
    with pytest.raises(ValueError, match="append-only"):
        event.delete()
    with pytest.raises(ValueError, match="Unknown audit action"):
        audit.record(actor=None, action="budget.raised", target=project, before=None, after=None)
    assert AuditEvent.objects.count() == 1


def test_the_admin_only_reads_the_trail(admin_client, cast, project):
    event = audit.record(actor=None, action="image.purged", target=project, before=None, after=None)
    assert admin_client.get(reverse("admin:workspace_auditevent_changelist")).status_code == 200
    assert admin_client.get(reverse("admin:workspace_auditevent_add")).status_code == 403
    admin_client.post(reverse("admin:workspace_auditevent_delete", args=[event.pk]), {"post": "yes"})
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_staff_read_the_trail_filtered_and_paged(client, cast, project):
    elsewhere = ProjectFactory(name="Autumn", created_by=cast.alice)
    for n in range(55):
        audit.record(
            actor=cast.alice,
            action="member.role",
            target=("membership", n),
            before={"role": "viewer"},
            after={"role": "editor"},
            project=project,
        )
    audit.record(
        actor=cast.bob,
        action="budget.changed",
        target=elsewhere,
        before=None,
        after={"x": 1},
        project=elsewhere,
    )
    url = reverse("audit")
    client.force_login(cast.bob)
    assert client.get(url).status_code == 404
    client.force_login(cast.sam)
    first = client.get(url)
    assert first.status_code == 200
    html = first.content.decode()
    assert html.count("<tr>") == 1 + 50  # the header and a page of 50
    assert "Page 1 of 2" in html and "page=2" in html
    assert "<del>viewer</del> → <ins>editor</ins>" in html
    budget = client.get(url, {"action": "budget.changed"})
    assert [e.project for e in budget.context["page"].object_list] == [elsewhere]
    in_project = client.get(url, {"project": project.pk, "page": "2"})
    assert len(in_project.context["page"].object_list) == 5
    assert f"project={project.pk}&amp;page=1" in in_project.content.decode()  # paging keeps the filter
    assert client.get(url, {"action": "nonsense"}).status_code == 400
    dashboard = client.get(reverse("spend_dashboard")).content.decode()
    assert f'href="{url}"' in dashboard
