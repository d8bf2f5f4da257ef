"""Sign-in resists guessing: failures lock the account and the address (django-axes), on our login page
and the admin's, with a page that says so; a client cannot pick its own address; an admin unlocks."""

import pytest
from axes.models import AccessAttempt
from django.core.management import call_command
from django.test import RequestFactory

from tests.factories import PASSWORD
from workspace.signin import client_ip

pytestmark = pytest.mark.django_db

LOGIN = "/accounts/login/"
ADMIN_LOGIN = "/admin/login/"
LOCKED_MESSAGE = "Too many failed sign-ins for this account; try again in 15 minutes or ask an admin."
LIMIT = 3


@pytest.fixture(autouse=True)
def throttling(settings):
    settings.AXES_FAILURE_LIMIT = LIMIT
    settings.TRUSTED_PROXY_COUNT = 0


def sign_in(client, username: str, password: str, *, url: str = LOGIN, address: str = "198.51.100.1", **meta):
    return client.post(url, {"username": username, "password": password}, REMOTE_ADDR=address, **meta)


def signed_in(client) -> bool:
    return "_auth_user_id" in client.session


def fail(client, times: int, *, username: str = "alice", **kwargs) -> list[int]:
    return [sign_in(client, username, "wrong-guess", **kwargs).status_code for _ in range(times)]


def test_it_locks_the_account_after_too_many_wrong_passwords(client, cast):
    assert fail(client, LIMIT) == [200] * (LIMIT - 1) + [429]

    # The right password, even from another address, is refused now, with the page that says why.
    response = sign_in(client, "alice", PASSWORD, address="203.0.113.50")
    assert response.status_code == 429
    assert LOCKED_MESSAGE in response.content.decode()
    assert "registration/locked_out.html" in [t.name for t in response.templates]
    assert not signed_in(client)
    # Another account from that address is unaffected.
    assert sign_in(client, "bob", PASSWORD, address="203.0.113.50").status_code == 302
    assert signed_in(client)


def test_it_locks_the_address_that_guesses_across_accounts(client, cast):
    for username in ("nobody", "bob", "vera"):
        fail(client, 1, username=username, address="198.51.100.7")

    assert sign_in(client, "alice", PASSWORD, address="198.51.100.7").status_code == 429
    assert not signed_in(client)
    assert sign_in(client, "alice", PASSWORD, address="198.51.100.8").status_code == 302


def test_a_spoofed_forwarded_for_does_not_escape_the_address_lockout_without_a_proxy(client, cast):
    for n, username in enumerate(("nobody", "bob", "vera")):
        fail(client, 1, username=username, address="198.51.100.7", HTTP_X_FORWARDED_FOR=f"10.9.9.{n}")

    response = sign_in(client, "alice", PASSWORD, address="198.51.100.7", HTTP_X_FORWARDED_FOR="10.9.9.200")
    assert response.status_code == 429
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"198.51.100.7"}


def test_behind_one_proxy_the_client_is_the_address_the_proxy_saw(client, cast, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    proxy = "172.18.0.5"
    # Whatever the client wrote comes first; the proxy appends the address it was connected from.
    for n, username in enumerate(("nobody", "bob", "vera")):
        fail(client, 1, username=username, address=proxy, HTTP_X_FORWARDED_FOR=f"10.9.9.{n}, 198.51.100.7")
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"198.51.100.7"}

    locked = sign_in(client, "alice", PASSWORD, address=proxy, HTTP_X_FORWARDED_FOR="10.1.1.1, 198.51.100.7")
    assert locked.status_code == 429
    # Another client through the same proxy is not locked out with it.
    other = sign_in(client, "alice", PASSWORD, address=proxy, HTTP_X_FORWARDED_FOR="198.51.100.8")
    assert other.status_code == 302


@pytest.mark.parametrize(
    ("proxies", "forwarded_for", "expected"),
    [
        (0, "", "192.0.2.1"),
        (0, "10.0.0.1", "192.0.2.1"),
        (1, "198.51.100.7", "198.51.100.7"),
        (1, "10.0.0.1, 198.51.100.7", "198.51.100.7"),
        (2, "10.0.0.1, 198.51.100.7, 172.18.0.9", "198.51.100.7"),
        (2, "198.51.100.7", "192.0.2.1"),  # fewer hops than proxies: only the socket is trusted
        (1, " , ", "192.0.2.1"),
    ],
)
def test_the_client_address_counts_only_trusted_hops(settings, proxies, forwarded_for, expected):
    settings.TRUSTED_PROXY_COUNT = proxies
    request = RequestFactory().get("/", REMOTE_ADDR="192.0.2.1", HTTP_X_FORWARDED_FOR=forwarded_for)
    assert client_ip(request) == expected


def test_an_admin_unlocks_from_the_admin(client, cast, make_user):
    fail(client, LIMIT)
    assert sign_in(client, "alice", PASSWORD).status_code == 429
    attempts = list(AccessAttempt.objects.values_list("pk", flat=True))
    assert attempts

    admin = make_user("root", is_staff=True, is_superuser=True)
    client.force_login(admin)
    changelist = "/admin/axes/accessattempt/"
    assert client.get(changelist).status_code == 200
    response = client.post(
        changelist, {"action": "delete_selected", "_selected_action": attempts, "post": "yes"}
    )
    assert response.status_code == 302
    assert not AccessAttempt.objects.exists()

    client.logout()
    assert sign_in(client, "alice", PASSWORD).status_code == 302
    assert signed_in(client)


def test_axes_reset_username_unlocks_one_account(client, cast):
    fail(client, LIMIT, address="198.51.100.1")
    fail(client, LIMIT, username="bob", address="198.51.100.2")

    call_command("axes_reset_username", "alice", verbosity=0)

    assert sign_in(client, "alice", PASSWORD, address="198.51.100.3").status_code == 302
    client.logout()
    assert sign_in(client, "bob", PASSWORD, address="198.51.100.3").status_code == 429


def test_the_admin_login_is_throttled_too(client, make_user):
    make_user("root", is_staff=True, is_superuser=True)
    statuses = fail(client, LIMIT, username="root", url=ADMIN_LOGIN + "?next=/admin/")
    assert statuses == [200] * (LIMIT - 1) + [429]

    response = sign_in(client, "root", PASSWORD, url=ADMIN_LOGIN + "?next=/admin/", address="203.0.113.9")
    assert response.status_code == 429
    assert LOCKED_MESSAGE in response.content.decode()
    assert not signed_in(client)
    # The lock is the account's, whichever page tried it.
    assert sign_in(client, "root", PASSWORD, address="203.0.113.9").status_code == 429


def test_a_success_clears_earlier_failures(client, cast):
    fail(client, LIMIT - 1)
    assert sign_in(client, "alice", PASSWORD).status_code == 302
    client.logout()
    assert fail(client, LIMIT - 1) == [200] * (LIMIT - 1)
    assert sign_in(client, "alice", PASSWORD).status_code == 302


def test_the_lockout_minutes_follow_the_setting(client, cast, settings):
    from datetime import timedelta

    settings.AXES_COOLOFF_TIME = timedelta(minutes=1)
    fail(client, LIMIT)
    response = sign_in(client, "alice", PASSWORD)
    assert "try again in 1 minute or ask an admin." in response.content.decode()


def test_a_lockout_goes_on_the_audit_trail_once(client, cast):
    from workspace.models import AuditEvent

    fail(client, LIMIT + 2)  # locks at the limit; the two tries after it are refused while locked
    (event,) = AuditEvent.objects.filter(action="auth.lockout")
    assert (event.actor, event.target_type, event.target_id) == (None, "username", "alice")
    assert event.after["ip_address"] == "198.51.100.1"
