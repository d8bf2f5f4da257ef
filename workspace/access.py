"""Who may do what in a project. Every project-scoped view starts here."""

from dataclasses import dataclass
from typing import TypeVar

from django.core.exceptions import PermissionDenied
from django.db.models import Model, OuterRef, QuerySet, Subquery
from django.http import Http404

from workspace.models import ROLE_RANK, Membership, Project, Role


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


def project_access(user, project_id: int, *, needs: Role = Role.VIEWER) -> ProjectAccess:
    """The project and the user's role in it, in one query.

    Someone outside the project gets a 404, never a 403: they must not learn that it exists.
    Staff see every project as viewers unless they are members.
    """
    if not user.is_authenticated:
        raise Http404
    membership = Membership.objects.select_related("project").filter(project_id=project_id, user=user).first()
    if membership is not None:
        access = ProjectAccess(membership.project, Role(membership.role), is_member=True)
    elif user.is_staff:
        project = Project.objects.filter(pk=project_id).first()
        if project is None:
            raise Http404
        access = ProjectAccess(project, Role.VIEWER, is_member=False)
    else:
        raise Http404
    _require(access, needs)
    return access


def _require(access: ProjectAccess, needs: Role) -> None:
    if ROLE_RANK[access.role] < ROLE_RANK[needs]:
        raise PermissionDenied(f"This needs the {needs.label.lower()} role in {access.project.name}.")


Scoped = TypeVar("Scoped", bound=Model)


def object_access(
    user, queryset: QuerySet[Scoped], *, project_id: int, pk: int, needs: Role = Role.VIEWER
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
    if scoped.viewer_role is not None:
        access = ProjectAccess(scoped.project, Role(scoped.viewer_role), is_member=True)
    elif user.is_staff:
        access = ProjectAccess(scoped.project, Role.VIEWER, is_member=False)
    else:
        raise Http404
    _require(access, needs)
    return access, scoped


def project_access_with_members(user, project_id: int) -> tuple[ProjectAccess, list[Membership]]:
    """Like project_access, and the project's members from the same query (for author filters)."""
    if not user.is_authenticated:
        raise Http404
    members = list(
        Membership.objects.select_related("project", "user")
        .filter(project_id=project_id)
        .order_by("user__username")
    )
    mine = next((m for m in members if m.user_id == user.pk), None)
    if mine is not None:
        return ProjectAccess(mine.project, Role(mine.role), is_member=True), members
    if user.is_staff:
        project = members[0].project if members else Project.objects.filter(pk=project_id).first()
        if project is not None:
            return ProjectAccess(project, Role.VIEWER, is_member=False), members
    raise Http404
