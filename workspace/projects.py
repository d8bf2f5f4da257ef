"""Projects and the people in them: create, rename, archive; add members, change roles, remove them.

A project always keeps at least one owner. Two owners may demote (or remove) each other at the same
moment; each change that can take an owner away therefore counts the owners under a row lock on the
project's owner memberships, so the second change waits for the first and then sees its result.
"""

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from workspace import audit
from workspace.models import Budget, Membership, Project, Role


class MembershipRefused(Exception):
    """A rule about members said no; the message says why, in words for the person who asked."""


LAST_OWNER = "A project needs at least one owner; make someone else owner first."


@transaction.atomic
def project_create(*, name: str, user: AbstractBaseUser) -> Project:
    """A new project, with the person who made it as its first owner and the default project budget.

    Anyone may create a project; the default budget is what keeps that from being a way around the
    budget of the project they were refused in.
    """
    project = Project.objects.create(name=name, created_by=user)
    Membership.objects.create(project=project, user=user, role=Role.OWNER)
    if settings.DEFAULT_PROJECT_BUDGET is not None:
        Budget.objects.create(project=project, monthly_limit=settings.DEFAULT_PROJECT_BUDGET)
    return project


def project_rename(*, project: Project, name: str) -> Project:
    project.name = name
    project.save(update_fields=["name"])
    return project


def project_archive(*, project: Project, archived: bool) -> Project:
    """Archive (keep every image, take no new jobs) or restore. Archiving twice keeps the first date."""
    if archived and not project.is_archived:
        project.archived_at = timezone.now()
    elif not archived:
        project.archived_at = None
    project.save(update_fields=["archived_at"])
    return project


def member_add(
    *, project: Project, user: AbstractBaseUser, role: str, actor: AbstractBaseUser | None
) -> Membership:
    try:
        with transaction.atomic():
            membership = Membership.objects.create(project=project, user=user, role=role)
            audit.record(
                actor=actor,
                action=audit.Action.MEMBER_ADDED,
                target=membership,
                before=None,
                after={"user": user.get_username(), "role": role},
                project=project,
            )
            return membership
    except IntegrityError:
        # The form checked, but someone else may have added them in between.
        raise MembershipRefused(f"{user.get_username()} is already a member.") from None


def _lock_owners(project: Project) -> set[int]:
    """The ids of the project's owner memberships, locked until the transaction ends.

    Always taken in id order, so two changes in the same project queue up instead of deadlocking.
    Under READ COMMITTED a waiting transaction re-reads each locked row once it is released, so a
    membership demoted meanwhile no longer counts as an owner here.
    """
    owners = Membership.objects.select_for_update().filter(project=project, role=Role.OWNER).order_by("pk")
    return set(owners.values_list("pk", flat=True))


def _member(project: Project, membership_id: int) -> Membership:
    """Raises Membership.DoesNotExist for an id of another project (the view turns it into a 404)."""
    return (
        Membership.objects.select_for_update(of=("self",))
        .select_related("user")
        .get(project=project, pk=membership_id)
    )


def member_set_role(
    *, project: Project, membership_id: int, role: str, actor: AbstractBaseUser | None
) -> Membership:
    with transaction.atomic():
        owners = _lock_owners(project)
        membership = _member(project, membership_id)
        owners.discard(membership.pk)
        if role == Role.OWNER:
            owners.add(membership.pk)
        if not owners:
            raise MembershipRefused(LAST_OWNER)
        before = membership.role
        membership.role = role
        membership.save(update_fields=["role"])
        if before != role:
            audit.record(
                actor=actor,
                action=audit.Action.MEMBER_ROLE,
                target=membership,
                before={"user": membership.user.get_username(), "role": before},
                after={"user": membership.user.get_username(), "role": role},
                project=project,
            )
    return membership


def member_remove(*, project: Project, membership_id: int, actor: AbstractBaseUser | None) -> Membership:
    """Take someone out of the project; returns the removed membership (for the message)."""
    with transaction.atomic():
        owners = _lock_owners(project)
        membership = _member(project, membership_id)
        if not owners - {membership.pk}:
            raise MembershipRefused(LAST_OWNER)
        audit.record(
            actor=actor,
            action=audit.Action.MEMBER_REMOVED,
            target=membership,
            before={"user": membership.user.get_username(), "role": membership.role},
            after=None,
            project=project,
        )
        membership.delete()
    return membership
