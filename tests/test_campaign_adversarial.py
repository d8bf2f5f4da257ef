"""An adversarial pass over campaigns through the real views: a retried row keeps a campaign's time to
wait, a refused retry leaves the campaign as it was, every CSV cell is checked as it will be used, rows
keep the numbers the preview showed, and the ZIP's names open on every system."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.factories import WebhookEndpointFactory
from tests.test_campaign_runs import _grid
from workspace import campaign_runs, spend
from workspace.campaign_models import Campaign
from workspace.models import Budget, Job, WebhookDelivery

pytestmark = pytest.mark.django_db
S = Job.Status


def _fail_one(campaign) -> Job:
    job = Job.objects.claim_next(worker="w", calls_per_user=0)
    assert job is not None and job.campaign_id == campaign.pk
    Job.objects.fail(job.pk, token=job.claim_token, code="x", message="Broke.")
    campaign_runs.job_ended(job_id=job.pk)
    return job


# --- Retry ---------------------------------------------------------------------------------------------


def test_a_retried_row_gets_the_campaigns_time_to_wait_not_the_studios(client, cast, project, settings):
    # A retried row waits behind the rest of the bulk lane like any row of its campaign; with the
    # Studio's 15 minutes it would fail "out of time" before a large retry reached it.
    campaign = _grid(project, cast.bob, version=None, prompt="A lemon", axes=[("quality", "low")])
    failed = _fail_one(campaign)
    client.force_login(cast.bob)
    client.post(reverse("campaign_control", args=[project.pk, campaign.pk]), {"action": "retry"})
    failed.refresh_from_db()
    assert failed.status == S.QUEUED
    expected = timezone.now() + timedelta(seconds=settings.CAMPAIGN_JOB_DEADLINE_SECONDS)
    assert abs(failed.deadline_at - expected) < timedelta(minutes=1)


def test_a_retry_the_budget_refuses_leaves_a_canceled_campaign_canceled(client, cast, project):
    WebhookEndpointFactory(project=project, events=["campaign.finished"])
    campaign = _grid(project, cast.bob, version=None, prompt="A lemon", axes=[("quality", "low, medium")])
    _fail_one(campaign)
    client.force_login(cast.bob)
    url = reverse("campaign_control", args=[project.pk, campaign.pk])
    client.post(url, {"action": "cancel"})
    before = Campaign.objects.get()
    assert before.status == Campaign.Status.CANCELED and before.finished_at is not None
    finished_events = WebhookDelivery.objects.filter(event_type="campaign.finished").count()
    assert finished_events == 1
    Budget.objects.create(project=project, monthly_limit=0)

    response = client.post(url, {"action": "retry"}, follow=True)
    assert "budget" in response.content.decode()
    after = Campaign.objects.get()
    assert (after.status, after.finished_at) == (before.status, before.finished_at)
    assert WebhookDelivery.objects.filter(event_type="campaign.finished").count() == finished_events
    assert spend.used(project=project) == 0
    assert set(Job.objects.values_list("status", "reserved_cost")) == {(S.CANCELED, 0), (S.FAILED, 0)}
