"""Projects and members through their services: the last-owner rule, also when two owners race."""

import threading
import time

import pytest
from django.db import connection

from workspace import projects
from workspace.models import Membership, Project, Role


@pytest.fixture
def two_owners(cast, make_user, project):
    """alice and dave own the project; bob edits, vera views (the conftest cast)."""
    dave = Membership.objects.create(project=project, user=make_user("dave"), role=Role.OWNER)
    alice = Membership.objects.get(project=project, user=cast.alice)
    return alice, dave


@pytest.mark.django_db
def test_it_makes_the_creator_the_first_owner(cast):
    project = projects.project_create(name="Autumn", user=cast.bob)
    assert list(project.memberships.values_list("user", "role")) == [(cast.bob.pk, Role.OWNER)]


@pytest.mark.django_db
def test_it_archives_once_and_restores(project):
    projects.project_archive(project=project, archived=True)
    first = project.archived_at
    projects.project_archive(project=project, archived=True)
    assert project.archived_at == first is not None
    projects.project_archive(project=project, archived=False)
    project.refresh_from_db()
    assert project.archived_at is None


@pytest.mark.django_db
def test_it_refuses_to_add_a_member_twice(cast, project):
    with pytest.raises(projects.MembershipRefused, match=r"bob is already a member\."):
        projects.member_add(actor=project.created_by, project=project, user=cast.bob, role=Role.VIEWER)
    assert project.memberships.filter(user=cast.bob).get().role == Role.EDITOR


@pytest.mark.django_db
def test_it_refuses_to_demote_or_remove_the_last_owner(cast, project):
    mine = Membership.objects.get(project=project, user=cast.alice)
    with pytest.raises(projects.MembershipRefused, match="at least one owner"):
        projects.member_set_role(
            actor=project.created_by, project=project, membership_id=mine.pk, role=Role.EDITOR
        )
    with pytest.raises(projects.MembershipRefused, match="at least one owner"):
        projects.member_remove(actor=project.created_by, project=project, membership_id=mine.pk)
    mine.refresh_from_db()
    assert mine.role == Role.OWNER


@pytest.mark.django_db
def test_it_lets_an_owner_go_while_another_stays(two_owners, project):
    alice, dave = two_owners
    assert (
        projects.member_set_role(
            actor=project.created_by, project=project, membership_id=dave.pk, role=Role.VIEWER
        ).role
        == "viewer"
    )
    projects.member_set_role(
        actor=project.created_by, project=project, membership_id=dave.pk, role=Role.OWNER
    )
    projects.member_remove(actor=project.created_by, project=project, membership_id=alice.pk)
    assert list(project.memberships.filter(role=Role.OWNER)) == [dave]


@pytest.mark.django_db
def test_another_projects_membership_is_not_found(project, other_project):
    theirs = other_project.memberships.get()
    with pytest.raises(Membership.DoesNotExist):
        projects.member_set_role(
            actor=project.created_by, project=project, membership_id=theirs.pk, role=Role.VIEWER
        )
    with pytest.raises(Membership.DoesNotExist):
        projects.member_remove(actor=project.created_by, project=project, membership_id=theirs.pk)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("change", ["demote", "remove"])
def test_two_owners_demoting_each_other_at_once_leave_one_owner(two_owners, project, monkeypatch, change):
    """Both requests read "two owners" unless the rule runs under a lock; the pause between the check
    and the write (as a slow database would have) makes the race certain instead of likely."""
    alice, dave = two_owners
    save, delete = Membership.save, Membership.delete

    def slow_save(self, *args, **kwargs):
        time.sleep(0.3)
        return save(self, *args, **kwargs)

    def slow_delete(self, *args, **kwargs):
        time.sleep(0.3)
        return delete(self, *args, **kwargs)

    monkeypatch.setattr(Membership, "save", slow_save)
    monkeypatch.setattr(Membership, "delete", slow_delete)
    start = threading.Barrier(2, timeout=10)
    outcomes: dict[int, str] = {}

    def demote(target: Membership) -> None:
        try:
            start.wait()
            if change == "demote":
                projects.member_set_role(
                    actor=project.created_by, project=project, membership_id=target.pk, role=Role.EDITOR
                )
            else:
                projects.member_remove(actor=project.created_by, project=project, membership_id=target.pk)
            outcomes[target.pk] = "done"
        except projects.MembershipRefused:
            outcomes[target.pk] = "refused"
        finally:
            connection.close()  # each thread has its own connection

    threads = [threading.Thread(target=demote, args=(target,)) for target in (dave, alice)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert sorted(outcomes.values()) == ["done", "refused"]
    assert Project.objects.get(pk=project.pk).memberships.filter(role=Role.OWNER).count() == 1
