"""The model registry as rows: seeded from the SDK, every choosable model priced, a row added by an admin
drives the form, the browser's capabilities, the request and the stand-in's checks; retired models stay
readable but cannot be chosen."""

import typing
from datetime import date

import openai
import pytest
from django.urls import reverse
from openai.types.image_model import ImageModel as SdkImageModel

from tests.conftest import GENERATION_POST
from tests.factories import ImageFactory, JobFactory
from tests.helpers import last_image_call, run
from tests.test_api import Api, assert_error, jobs_url, secret_for
from workspace import imagemodels, spend
from workspace.models import ImageModelSpec, Job

pytestmark = pytest.mark.django_db


def new_row(**overrides) -> ImageModelSpec:
    fields = {
        "name": "gpt-image-2.7-comet",
        "label": "GPT Image 2.7 Comet",
        "blurb": "A snapshot added in the admin, not in code.",
        "family": "gpt-image-2",  # priced and estimated as its family
        "position": 1,
        "sizes": ["1024x1024", "1536x1024", "1024x1536"],
        "qualities": ["auto", "low", "medium", "high"],
        "complexity": ["low", "high"],
    }
    return ImageModelSpec.objects.create(**(fields | overrides))


def test_it_seeds_every_model_the_sdk_lists_and_keeps_gpt_image_1_retired():
    sdk_models = set(typing.get_args(SdkImageModel)) - {"dall-e-2", "dall-e-3"}
    rows = {row.name: row for row in ImageModelSpec.objects.all()}
    assert set(rows) == sdk_models
    assert rows["gpt-image-1"].retired_on.isoformat() == "2026-10-23"
    assert imagemodels.get_model("gpt-image-1").retired  # readable by name, for old lineage
    selectable = [model.id for model in imagemodels.selectable()]
    assert "gpt-image-1" not in selectable
    assert selectable[0] == imagemodels.DEFAULT_MODEL  # menu order is the rows' position
    sunburst_26 = imagemodels.get_model("gpt-image-2.6-sunburst")
    assert (sunburst_26.gif, sunburst_26.svg, sunburst_26.markup) == (True, True, True)
    assert sunburst_26.complexity_levels == ("low", "medium", "high")
    assert not sunburst_26.custom_sizes  # the SDK's size docstring names only 2 and 2.5 for custom sizes
    assert imagemodels.get_model("gpt-image-2.5-flare-2026-09-08").family == "gpt-image-2.5-flare"
    assert imagemodels.get_model("gpt-image-1-mini").input_fidelity == ("low",)


def test_every_model_anyone_can_choose_has_a_price_in_force():
    assert spend.unpriced_models() == set()
    for model in imagemodels.selectable():
        assert spend.price_for(model.id) is not None, model.id
        for author in model.svg_authors:  # an SVG's author model is a ledger line at its own price
            assert spend.price_for(author) is not None, (model.id, author)
    # 2.6 at gpt-image-2's rates (reference §13).
    assert spend.price_for("gpt-image-2.6-flare").image_output == spend.price_for("gpt-image-2").image_output


def test_a_row_added_in_the_admin_appears_in_the_form_and_is_sent_as_written(client, cast, project, standin):
    new_row()
    client.force_login(cast.bob)
    page = client.get(reverse("project", args=[project.pk])).content.decode()
    assert '<option value="gpt-image-2.7-comet">GPT Image 2.7 Comet</option>' in page
    caps = imagemodels.capabilities()["gpt-image-2.7-comet"]
    assert caps["complexityLevels"] == ["low", "high"] and caps["formats"] == ["png", "jpeg", "webp"]

    # The stand-in checks requests by the same rows (as tests and `make run` start it).
    standin.use_models(imagemodels.standin_models())
    post = GENERATION_POST | {"model": "gpt-image-2.7-comet", "complexity": "high", "quality": "medium"}
    response = client.post(reverse("job_create", args=[project.pk]), post)
    assert response.status_code == 302, response.content.decode()[:2000]
    job = run(Job.objects.get())
    assert job.status == Job.Status.SUCCEEDED, job.error_message
    sent = last_image_call(standin).fields
    assert (sent["model"], sent["complexity"], sent["quality"]) == ("gpt-image-2.7-comet", "high", "medium")
    assert job.charges.get().model == "gpt-image-2.7-comet"  # charged at its family's price
    assert job.charges.get().priced


def test_an_offered_planning_effort_is_the_rows_not_a_constant(client, cast, project):
    new_row(complexity=["low"])
    client.force_login(cast.bob)
    post = GENERATION_POST | {"model": "gpt-image-2.7-comet", "complexity": "medium"}
    response = client.post(reverse("job_create", args=[project.pk]), post)
    assert response.status_code == 400
    assert "does not offer medium planning effort" in response.content.decode()


def test_the_stand_in_refuses_a_model_it_was_not_given(standin, cast, project):
    new_row()  # but the stand-in still has its built-in tables
    job = run(JobFactory(project=project, author=cast.bob, model="gpt-image-2.7-comet"))
    assert job.status == Job.Status.FAILED
    assert "does not exist" in job.error_message


def test_a_retired_model_is_refused_in_words_by_the_form_and_the_api(client, cast, project):
    client.force_login(cast.bob)
    response = client.post(
        reverse("job_create", args=[project.pk]), GENERATION_POST | {"model": "gpt-image-1"}
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert "GPT Image 1 was retired on 2026-10-23 and can no longer be chosen" in page
    assert '<option value="gpt-image-1"' not in page

    api = Api(secret_for(cast.bob))
    body = {"prompt": "A lemon", "model": "gpt-image-1"}
    error = assert_error(api.post(jobs_url(project), body), 400)
    assert error["fields"]["model"] == [
        "GPT Image 1 was retired on 2026-10-23 and can no longer be chosen. "
        "Use GPT Image 2.5 Sunburst or Flare instead."
    ]
    assert not Job.objects.exists()


def test_an_old_image_of_a_retired_model_still_reads(client, cast, project):
    image = ImageFactory(
        job__project=project, job__author=cast.bob, job__model="gpt-image-1", model="gpt-image-1"
    )
    client.force_login(cast.bob)
    assert client.get(image.get_absolute_url()).status_code == 200
    assert client.get(reverse("image_family", args=[project.pk, image.pk])).status_code == 200


def test_reproducing_a_job_of_a_retired_model_is_refused_in_words(client, cast, project, seeded_prices):
    """Reproduce, More like this and Run again choose the model again: a retired one is refused
    before anything is reserved or sent, with the reason, and the old image still reads."""
    image = ImageFactory(
        job__project=project, job__author=cast.bob, job__model="gpt-image-1", model="gpt-image-1"
    )
    client.force_login(cast.bob)
    response = client.post(
        reverse("job_reproduce", args=[project.pk, image.job_id]), {"next": image.get_absolute_url()}
    )
    assert response.status_code == 302 and response["Location"] == image.get_absolute_url()
    assert list(Job.objects.values_list("pk", flat=True)) == [image.job_id]
    page = client.get(response["Location"]).content.decode()
    assert "GPT Image 1 was retired on 2026-10-23 and can no longer be chosen" in page


def test_retrying_a_failed_job_of_a_retired_model_is_refused_in_words_in_the_page_and_the_api(
    client, cast, project, seeded_prices
):
    """Retry runs the job again on its model: a retired one would only fail again at OpenAI, after
    its estimate was held. Refused before anything is reserved or sent, with the reason."""
    job = JobFactory(
        project=project, author=cast.bob, model="gpt-image-1", status=Job.Status.FAILED, estimated_cost=1
    )
    client.force_login(cast.bob)
    response = client.post(reverse("job_retry", args=[project.pk, job.pk]), HTTP_HX_REQUEST="true")
    assert response.status_code == 409
    assert "GPT Image 1 was retired on 2026-10-23" in response.content.decode()

    error = assert_error(
        Api(secret_for(cast.bob)).post(reverse("api:job-retry", args=[project.pk, job.pk])),
        409,
        "model_retired",
    )
    assert "GPT Image 1 was retired on 2026-10-23" in error["message"]
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED and job.reserved_cost == 0


def test_a_saved_row_is_read_at_once_in_this_process():
    assert imagemodels.get_model("gpt-image-2.7-comet") is None
    imagemodels.all_models()  # cached now
    row = new_row()
    assert imagemodels.get_model("gpt-image-2.7-comet").label == "GPT Image 2.7 Comet"
    row.retired_on = row.retired_on or __import__("datetime").date(2026, 1, 1)
    row.save()
    assert "gpt-image-2.7-comet" not in {model.id for model in imagemodels.selectable()}


def _admin_row() -> dict:
    """The admin add form's fields for a new snapshot, as staff fill them in."""
    return {
        "name": "gpt-image-9-test",
        "label": "GPT Image 9",
        "blurb": "",
        "family": "",
        "position": "70",
        "sizes": '["1024x1024"]',
        "size_multiple": "16",
        "min_pixels": "655360",
        "max_pixels": "8294400",
        "max_edge": "3840",
        "max_ratio": "3",
        "qualities": '["auto", "low"]',
        "transparent": "on",
        "input_fidelity": "[]",
        "complexity": '["ultra"]',
        "svg_authors": "[]",
        "streaming": "on",
        "batch": "on",
        "retired_on": "",
        "retired_note": "",
    }


def test_staff_add_a_snapshot_in_the_admin_and_are_warned_when_it_has_no_price(client, cast):
    client.force_login(cast.sam)
    cast.sam.is_superuser = True
    cast.sam.save()
    data = _admin_row()
    url = reverse("admin:workspace_imagemodelspec_add")
    refused = client.post(url, data)
    assert refused.status_code == 200
    assert "Unknown: ultra. Allowed: low, medium, high." in refused.content.decode()
    added = client.post(url, data | {"complexity": '["low"]'}, follow=True)
    assert "Gpt-image-9-test has no price in force, so nobody can choose it yet" in added.content.decode()
    assert imagemodels.get_model("gpt-image-9-test").complexity_levels == ("low",)
    assert "gpt-image-9-test" in spend.unpriced_models()  # listed, but the form refuses it until priced


def test_the_stand_ins_responses_endpoint_checks_the_tool_model_against_the_same_rows(standin):
    new_row()
    ImageModelSpec.objects.filter(name="gpt-image-2.5-flare").update(retired_on=date(2026, 11, 1))
    imagemodels.invalidate()
    standin.use_models(imagemodels.standin_models())
    client = openai.OpenAI(api_key="sk-test", base_url=standin.base_url, max_retries=0)

    def turn(model: str):
        tool = {"type": "image_generation", "model": model, "action": "generate"}
        return client.responses.create(model="gpt-5.5", input="A lemon", tools=[tool])

    # A snapshot added as a row is known to the conversation endpoint too; one retired as a row is refused.
    assert turn("gpt-image-2.7-comet").output[0].type == "image_generation_call"
    with pytest.raises(openai.BadRequestError, match=r"gpt-image-2\.5-flare"):
        turn("gpt-image-2.5-flare")


@pytest.mark.parametrize("field", ["size_multiple", "max_ratio", "max_edge"])
def test_the_admin_refuses_a_size_rule_of_zero(client, cast, project, field):
    """A row saved with size multiple 0 made every custom size on its model a ZeroDivisionError (a 500
    on the job form for everyone); a ratio or edge of 0 refused every size. Each must be at least 1."""
    cast.sam.is_superuser = True
    cast.sam.save()
    client.force_login(cast.sam)
    data = _admin_row() | {"complexity": '["low"]', field: "0"}
    refused = client.post(reverse("admin:workspace_imagemodelspec_add"), data)
    assert refused.status_code == 200
    assert "Ensure this value is greater than or equal to 1." in refused.content.decode()
    assert not ImageModelSpec.objects.filter(name="gpt-image-9-test").exists()
