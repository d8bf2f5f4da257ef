"""The audit trail: who moved money or access, what they changed, when, and the values before and after.

One writer, `record`, called by the services that make those changes (projects.py for members,
review.py for deleting, restoring and purging images, admin.py for prices and budgets; sign-in
lockouts and dashboard budget changes call it too). Staff read it at /audit/. Rows are append-only.

Why a small model of our own and not django-auditlog: auditlog records every save of a registered
model through signals, so it would log a Membership change but not *who* in a Celery task, nor a
bulk `update()` (image deletes and purges are conditional UPDATEs), nor a lockout, which changes no
model. Ours is written by the service that knows the actor and the meaning, in the same transaction.
"""

from collections.abc import Iterable
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Model, QuerySet

from workspace.models import AuditEvent, Project

Action = AuditEvent.Action


def record(
    *,
    actor: AbstractBaseUser | None,
    action: str,
    target: Model | tuple[str, Any],
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    project: Project | None = None,
) -> AuditEvent:
    """Append one event. A stable signature: other modules call it.

    actor    the person who acted, or None for the system (beat's purge) or an anonymous request.
    action   one of AuditEvent.Action (e.g. Action.MEMBER_ROLE, "auth.lockout"); anything else is a
             ValueError, so a typo fails in tests instead of writing an event no filter finds.
    target   the model instance acted on, or (type, id) for something without a row (a lockout:
             ("username", "alice")).
    before, after
             the fields that changed, as JSON-able dicts (Decimals, dates and datetimes are fine);
             None for "did not exist" (before a create, after a delete).
    project  the project it happened in, if any, for the project filter.

    Call it inside the transaction of the change, so the event and the change commit together.
    """
    if action not in Action.values:
        raise ValueError(f"Unknown audit action {action!r}; add it to AuditEvent.Action.")
    if isinstance(target, Model):
        target_type, target_id, label = target._meta.model_name, target.pk, str(target)
    else:
        target_type, target_id = target
        label = str(target_id)
    return AuditEvent.objects.create(
        actor=actor if actor is not None and actor.is_authenticated else None,
        actor_name=actor.get_username() if actor is not None and actor.is_authenticated else "",
        action=action,
        target_type=target_type,
        target_id=str(target_id),
        target_label=label[:200],
        project=project,
        project_name=project.name if project is not None else "",
        before=before,
        after=after,
    )


def fields_of(instance: Model, names: Iterable[str]) -> dict[str, Any]:
    """The named fields' values, for before/after (foreign keys by id)."""
    return {name: getattr(instance, instance._meta.get_field(name).attname) for name in names}


def events(*, action: str = "", project_id: int | None = None) -> QuerySet[AuditEvent]:
    """The trail, newest first, filtered by action and project."""
    found = AuditEvent.objects.select_related("actor", "project")
    if action:
        found = found.filter(action=action)
    if project_id is not None:
        found = found.filter(project_id=project_id)
    return found.order_by("-created_at", "-id")
