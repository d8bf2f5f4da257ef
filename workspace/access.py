"""Who may do what in a project. Every project-scoped view starts here."""

from dataclasses import dataclass

from django.core.exceptions import PermissionDenied
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
    if ROLE_RANK[access.role] < ROLE_RANK[needs]:
        raise PermissionDenied(f"This needs the {needs.label.lower()} role in {access.project.name}.")
    return access


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
