"""Running it for real: the laptop stack holds a burst; operators see metrics and follow a job in the logs."""

import http.client
import json
import logging
import sqlite3
import subprocess
import sys
import threading
import urllib.parse
from decimal import Decimal

import pytest
from django.urls import reverse
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from config.celery import app
from devtools.loadkit import GENERATION_FORM, LaptopServer
from tests.factories import JobFactory
from tests.helpers import ROOT, clean_env, purge_queue
from workspace import tasks, worker
from workspace.models import Job, LedgerEntry

# --- The web tier holds a burst ---------------------------------------------------------------------

BURST = 50


def test_it_answers_fifty_simultaneous_submits_on_the_laptop_stack(tmp_path):
    with LaptopServer(tmp_path / "var") as server:
        session = server.signed_in()
        body = urllib.parse.urlencode(GENERATION_FORM).encode()
        headers = session.headers() | {"Content-Type": "application/x-www-form-urlencoded"}
        path = f"/p/{server.project_id}/jobs"
        start = threading.Barrier(BURST)
        answers: list[int | str] = [""] * BURST

        def submit(i: int) -> None:
            connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
            start.wait()
            try:
                connection.request("POST", path, body=body, headers=headers)
                response = connection.getresponse()
                answers[i] = response.status
                response.read()
            except OSError as error:  # a reset, a refused connection, a timeout
                answers[i] = repr(error)
            finally:
                connection.close()

        threads = [threading.Thread(target=submit, args=(i,)) for i in range(BURST)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)

        # Two gunicorn processes shared the burst; whichever answers a scrape counts all of it.
        submits = []
        for _ in range(4):
            with session.opener.open(f"{server.base_url}/metrics", timeout=30) as response:
                text = response.read().decode()
            submits.append(_posts_answered(text))

    assert [a for a in answers if not (isinstance(a, int) and 200 <= a < 400)] == []
    with sqlite3.connect(tmp_path / "var" / "atelier.sqlite3") as db:
        (jobs,) = db.execute("SELECT count(*) FROM workspace_job").fetchone()
    assert jobs == BURST
    # Sign-in and the new project were POSTs too, answered by either process.
    assert all(count >= BURST for count in submits), submits


def _posts_answered(text: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "django_http_requests_total_by_method"
        for sample in family.samples
        if sample.name.endswith("_total") and sample.labels.get("method") == "POST"
    )


# --- /metrics -----------------------------------------------------------------------------------------

TOKEN = "metrics-token-for-the-tests-0123456789"


@pytest.fixture
def metrics_token(settings):
    settings.METRICS_TOKEN = TOKEN
    return TOKEN


def _samples(text: str, name: str) -> dict[tuple, float]:
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


@pytest.mark.django_db
def test_it_hides_metrics_from_strangers(client, cast, metrics_token):
    url = reverse("metrics")
    assert client.get(url).status_code == 404
    assert client.get(url, HTTP_AUTHORIZATION="Bearer wrong-token-of-some-length").status_code == 404
    assert client.get(url, HTTP_AUTHORIZATION=f"Basic {TOKEN}").status_code == 404
    client.force_login(cast.bob)  # signed in, not staff
    assert client.get(url).status_code == 404


@pytest.mark.django_db
def test_it_refuses_an_empty_bearer_when_no_token_is_set(client, settings):
    settings.METRICS_TOKEN = ""
    assert client.get(reverse("metrics"), HTTP_AUTHORIZATION="Bearer ").status_code == 404


@pytest.mark.django_db
def test_it_serves_metrics_to_staff_and_to_the_token(client, cast, metrics_token):
    url = reverse("metrics")
    by_token = client.get(url, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert by_token.status_code == 200
    assert by_token["Content-Type"].startswith("text/plain")
    text = by_token.content.decode()
    assert "django_http_requests_before_middlewares_total" in text
    assert "atelier_jobs" in text
    client.force_login(cast.sam)
    assert client.get(url).status_code == 200


@pytest.mark.django_db
def test_it_counts_jobs_by_state_as_the_database_does(client, cast, project, metrics_token):
    JobFactory.create_batch(3, project=project)
    JobFactory.create_batch(2, project=project, succeeded=True)
    JobFactory(project=project, status=Job.Status.FAILED)
    text = client.get(reverse("metrics"), HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode()
    counts = {dict(labels)["state"]: value for labels, value in _samples(text, "atelier_jobs").items()}
    assert counts == {
        status: float(Job.objects.filter(status=status).count()) for status in Job.Status.values
    }
    assert (counts["queued"], counts["succeeded"], counts["failed"]) == (3.0, 2.0, 1.0)


# --- Request ids, and the job's log lines -------------------------------------------------------------


@pytest.mark.django_db
def test_it_echoes_the_callers_request_id_and_makes_one_otherwise(client):
    given = client.get(reverse("login"), HTTP_X_REQUEST_ID="lb-7f3a.91")
    assert given["X-Request-ID"] == "lb-7f3a.91"
    made = client.get(reverse("login"), HTTP_X_REQUEST_ID="not sane\nat all")
    assert (
        len(made["X-Request-ID"]) == 32
        and made["X-Request-ID"] != client.get(reverse("login"))["X-Request-ID"]
    )


def _published_headers(job_id: int) -> dict:
    """The headers of the run_job message sent for the job, taken off the (test) broker."""
    with app.connection_for_read() as conn:
        queue = conn.SimpleQueue(app.conf.task_default_queue)
        try:
            while True:
                message = queue.get(timeout=5)
                message.ack()
                if message.headers.get("task") == tasks.run_job.name and message.headers.get("argsrepr") == (
                    f"({job_id},)"
                ):
                    return message.headers
        finally:
            queue.close()


@pytest.mark.django_db(transaction=True)
def test_a_job_logs_with_its_id_and_the_submitting_requests_id(
    client, cast, project, generation_post, image_service, caplog
):
    purge_queue()
    client.force_login(cast.alice)
    response = client.post(
        reverse("job_create", args=[project.pk]), generation_post, HTTP_X_REQUEST_ID="submit-4242"
    )
    assert response.status_code == 302
    job = Job.objects.get(project=project)
    headers = _published_headers(job.pk)
    assert headers["atelier_request_id"] == "submit-4242"

    image_service.inject("moderation")  # a refused call: the worker logs it
    with caplog.at_level(logging.INFO, logger="workspace.worker"):
        tasks.run_job.apply(args=(job.pk,), headers=headers)  # as a worker runs the message
    lines = [
        r for r in caplog.records if r.name == "workspace.worker" and "image call failed" in r.getMessage()
    ]
    assert lines, caplog.text
    assert [(r.request_id, r.job_id) for r in lines] == [("submit-4242", str(job.pk))] * len(lines)
    assert Job.objects.get(pk=job.pk).status == Job.Status.FAILED


def _permanent_errors() -> float:
    return sum(
        sample.value
        for family in REGISTRY.collect()
        if family.name == "atelier_api_errors"
        for sample in family.samples
        if sample.name.endswith("_total") and sample.labels["transient"] == "false"
    )


@pytest.mark.django_db
def test_it_counts_api_errors_and_real_dollars_in_the_worker(cast, project, image_service):
    before_errors = _permanent_errors()
    before_real = REGISTRY.get_sample_value("atelier_spend_dollars_total", {"kind": "real"}) or 0.0

    failing = JobFactory(project=project)
    image_service.inject("moderation")
    worker.job_run(job_id=failing.pk)
    assert _permanent_errors() - before_errors == 1.0
    code = failing.api_calls.get().error_code
    assert REGISTRY.get_sample_value("atelier_api_errors_total", {"error_class": code, "transient": "false"})

    paid = JobFactory(project=project)
    worker.job_run(job_id=paid.pk)
    charged = LedgerEntry.objects.get(job=paid).cost
    assert charged > Decimal(0)
    after_real = REGISTRY.get_sample_value("atelier_spend_dollars_total", {"kind": "real"})
    assert after_real - before_real == pytest.approx(float(charged))


# --- The laptop settings -------------------------------------------------------------------------------

LAPTOP_SCRIPT = (
    "import json, django; django.setup(); from django.conf import settings as s; "
    "print(json.dumps([s.DEBUG, s.DEMO_MODE, s.ALLOWED_HOSTS, s.SECURE_SSL_REDIRECT, "
    "s.SESSION_COOKIE_SECURE, "
    "s.STORAGES['staticfiles']['BACKEND'], len(s.SECRET_KEY)]))"
)


def test_it_serves_make_run_with_debug_off_on_a_generated_secret(tmp_path):
    env = clean_env(ATELIER_LOCAL="true", VAR_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="config.settings")
    result = subprocess.run(
        [sys.executable, "-c", LAPTOP_SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    debug, demo, hosts, redirect, secure_cookie, static, key_length = json.loads(
        result.stdout.splitlines()[-1]
    )
    assert (debug, demo, redirect, secure_cookie) == (False, True, False, False)
    assert hosts == ["127.0.0.1", "localhost", "[::1]"]
    assert static == "django.contrib.staticfiles.storage.StaticFilesStorage"  # no collectstatic needed
    assert key_length >= 50 and (tmp_path / "secret_key").read_text().strip()


def test_it_still_refuses_a_missing_secret_without_atelier_local(tmp_path):
    env = clean_env(VAR_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="config.settings")
    result = subprocess.run(
        [sys.executable, "-c", LAPTOP_SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "SECRET_KEY must be set to a long random value when DEBUG is off" in result.stderr
    assert not (tmp_path / "secret_key").exists()


@pytest.mark.django_db
def test_it_logs_djangos_not_found_line_with_the_request_id(client, caplog):
    with caplog.at_level(logging.WARNING, logger="django.request"):
        client.get("/no-such-page", HTTP_X_REQUEST_ID="lost-404")
    assert [r.request_id for r in caplog.records if r.name == "django.request"] == ["lost-404"]
