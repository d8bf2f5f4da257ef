"""Who may do what in a project. Every project-scoped view starts here."""

from dataclasses import dataclass
from typing import TypeVar

from django.core.exceptions import PermissionDenied
from django.db.models import Model, OuterRef, QuerySet, Subquery
from django.http import Http404

from workspace import hot_queries
from workspace.models import ROLE_RANK, Image, Job, Membership, Project, Role

ARCHIVED = "This project is archived; unarchive it to make changes."


class ProjectArchived(Exception):
    """A write asked of an archived project. Answered 409 with the message by
    workspace.middleware.RefusalMiddleware, like PermissionDenied is answered 403 by Django."""


@dataclass(frozen=True)
class ProjectAccess:
    project: Project
    role: Role
    is_member: bool

    @property
    def can_edit(self) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[Role.EDITOR] and not self.project.is_archived

    @property
    def is_owner(self) -> bool:
        return self.role == Role.OWNER


def _grant(
    user, project: Project | None, role: str | None, needs: Role, *, writes: bool = False
) -> ProjectAccess:
    """The rules in one place: members by their role, staff as viewers, anyone else a 404 (never a 403:
    they must not learn that the project exists); and an archived project takes no writes (a 409),
    checked after the role so that only those who could write learn why they cannot."""
    if project is None:
        raise Http404
    if role is not None:
        access = ProjectAccess(project, Role(role), is_member=True)
    elif user.is_staff:
        access = ProjectAccess(project, Role.VIEWER, is_member=False)
    else:
        raise Http404
    if ROLE_RANK[access.role] < ROLE_RANK[needs]:
        raise PermissionDenied(f"This needs the {needs.label.lower()} role in {access.project.name}.")
    if writes and access.project.is_archived:
        raise ProjectArchived(ARCHIVED)
    return access


def project_access(
    user, project_id: int, *, needs: Role = Role.VIEWER, writes: bool = False
) -> ProjectAccess:
    """The project and the user's role in it, in one query (two for staff outside it).

    `writes=True` for every request that changes something in the project: an archived one refuses it.
    """
    if not user.is_authenticated:
        raise Http404
    membership = Membership.objects.select_related("project").filter(project_id=project_id, user=user).first()
    if membership is not None:
        return _grant(user, membership.project, membership.role, needs, writes=writes)
    project = Project.objects.filter(pk=project_id).first() if user.is_staff else None
    return _grant(user, project, None, needs, writes=writes)


Scoped = TypeVar("Scoped", bound=Model)


def object_access(
    user,
    queryset: QuerySet[Scoped],
    *,
    project_id: int,
    pk: int,
    needs: Role = Role.VIEWER,
    writes: bool = False,
) -> tuple[ProjectAccess, Scoped]:
    """One project-scoped object (a job, an image) and the user's role in its project, in one query.

    For the views hit most: the job card polls every second and every thumbnail is a request. The
    rules are project_access's: a missing object and a stranger's object are the same 404.
    """
    if not user.is_authenticated:
        raise Http404
    role = Membership.objects.filter(project_id=OuterRef("project_id"), user_id=user.pk).values("role")[:1]
    found = list(
        queryset.select_related("project")
        .annotate(viewer_role=Subquery(role))
        .filter(project_id=project_id, pk=pk)[:1]
    )
    if not found:
        raise Http404
    scoped = found[0]
    return _grant(user, scoped.project, scoped.viewer_role, needs, writes=writes), scoped


def job_card_access(user, *, project_id: int, job_id: int) -> tuple[ProjectAccess, Job, list[Image]]:
    """object_access for the job card, which each open card polls every second, with the images a
    succeeded card shows: one query, written in SQL (see hot_queries). The same rules, the same 404."""
    if not user.is_authenticated:
        raise Http404
    found = hot_queries.job_card(viewer_id=user.pk, project_id=project_id, job_id=job_id)
    if found is None:
        raise Http404
    job, role, images = found
    return _grant(user, job.project, role, Role.VIEWER), job, images


def project_access_with_members(
    user, project_id: int, *, annotations: dict | None = None
) -> tuple[ProjectAccess, list[Membership]]:
    """Like project_access, and the project's members from the same query (for author filters).

    `annotations` ride on each member row (the gallery's filter choices, which then cost no query).
    """
    if not user.is_authenticated:
        raise Http404
    members = list(
        Membership.objects.select_related("project", "user")
        .filter(project_id=project_id)
        .annotate(**(annotations or {}))
        .order_by("user__username")
    )
    mine = next((m for m in members if m.user_id == user.pk), None)
    if mine is not None:
        return _grant(user, mine.project, mine.role, Role.VIEWER), members
    project = None
    if user.is_staff:
        project = members[0].project if members else Project.objects.filter(pk=project_id).first()
    return _grant(user, project, None, Role.VIEWER), members
