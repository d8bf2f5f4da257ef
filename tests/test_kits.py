"""Brand kit and template pages, the Studio using them, and every output saying what made it."""

import io
import json
import re
import zipfile

import pytest
from django.urls import reverse

from tests.conftest import GENERATION_POST
from tests.factories import ImageFactory, JobFactory, ReferenceFactory, brand_kit_version, template_version
from tests.helpers import wait_for
from workspace import campaigns
from workspace.campaign_models import BrandKitVersion, Campaign, PromptTemplate, TemplateVersion
from workspace.models import Image, Job

pytestmark = pytest.mark.django_db


@pytest.fixture
def no_send(monkeypatch):
    monkeypatch.setattr("workspace.jobs._enqueue", lambda job_id: None)


def kit_post(**fields) -> dict:
    return {
        "name": "House style",
        "style_words": "warm, editorial",
        "art_direction": "",
        "palette": "#1F3A5F, #f2e8d5",
        "avoid": "text",
        "default_size": "portrait",
        "default_quality": "low",
        "default_format": "",
    } | fields


def template_post(**fields) -> dict:
    return {"name": "Product shot", "text": "A {product} in {season} light"} | fields


# --- Brand kits ----------------------------------------------------------------------------------------


def test_it_saves_a_kit_and_each_edit_as_a_new_version(client, cast, project):
    client.force_login(cast.bob)
    ref = ReferenceFactory(project=project)
    response = client.post(reverse("kit_create", args=[project.pk]), kit_post(references=[ref.pk]))
    version = BrandKitVersion.objects.get()
    assert response.status_code == 302
    assert response["Location"] == version.kit.get_absolute_url()
    assert version.palette == ["#1f3a5f", "#f2e8d5"]
    assert version.defaults == {"size_preset": "portrait", "size": "1024x1536", "quality": "low"}
    assert list(version.references.all()) == [ref]

    client.post(reverse("kit_edit", args=[project.pk, version.kit.pk]), kit_post(style_words="cold, stark"))
    newest = version.kit.versions.get(number=2)
    assert newest.style_words == "cold, stark"
    assert list(newest.references.all()) == []

    old = client.get(reverse("kit_version", args=[project.pk, version.kit.pk, 1]))
    assert "warm, editorial" in old.content.decode()
    assert "This is an old version" in old.content.decode()
    page = client.get(version.kit.get_absolute_url()).content.decode()
    assert "cold, stark" in page
    assert 'fill="#1f3a5f"' in page  # the palette as swatches


def test_a_bad_palette_is_a_field_error_and_saves_nothing(client, cast, project):
    client.force_login(cast.bob)
    response = client.post(reverse("kit_create", args=[project.pk]), kit_post(palette="#1f3a5f, navy"))
    assert response.status_code == 400
    assert "Colour 2 (“navy”) is not a hex colour" in response.content.decode()
    assert not BrandKitVersion.objects.exists()


def test_the_kit_form_previews_the_exact_prompt(client, cast, project):
    client.force_login(cast.bob)
    response = client.post(
        reverse("kit_preview", args=[project.pk]),
        kit_post(sample_prompt="A mug"),
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    assert (
        "A mug\n\nStyle: warm, editorial. Palette: #1f3a5f, #f2e8d5. Avoid: text."
        in response.content.decode()
    )


def test_a_viewer_sees_kits_but_cannot_make_one(client, cast, project):
    brand_kit_version(project=project)
    client.force_login(cast.vera)
    assert "House style" in client.get(reverse("kit_list", args=[project.pk])).content.decode()
    assert client.post(reverse("kit_create", args=[project.pk]), kit_post()).status_code == 403
    assert BrandKitVersion.objects.count() == 1


def test_another_projects_kit_or_template_is_a_404(client, cast, project, other_project):
    kit = brand_kit_version(project=other_project).kit
    template = template_version(project=other_project).template
    client.force_login(cast.alice)
    for url in (
        reverse("kit_detail", args=[project.pk, kit.pk]),
        reverse("kit_version", args=[project.pk, kit.pk, 1]),
        reverse("kit_edit", args=[project.pk, kit.pk]),
        reverse("template_detail", args=[project.pk, template.pk]),
        reverse("template_version", args=[project.pk, template.pk, 1]),
        f"{reverse('project', args=[project.pk])}?template={template.pk}",
        f"{reverse('project', args=[project.pk])}?kit={kit.pk}",
    ):
        assert client.get(url).status_code == 404, url
    # A version id of theirs in my Studio form is a 404 too, and nothing is queued.
    response = client.post(
        reverse("job_create", args=[project.pk]),
        GENERATION_POST | {"template_version": template.latest.pk, "var_product": "mug"},
    )
    assert response.status_code == 404
    assert not Job.objects.exists()


def test_a_template_may_not_use_another_projects_kit(client, cast, project, other_project):
    theirs = brand_kit_version(project=other_project)
    client.force_login(cast.bob)
    response = client.post(
        reverse("template_create", args=[project.pk]), template_post(brand_kit=theirs.kit.pk)
    )
    assert response.status_code == 400
    assert not PromptTemplate.objects.exists()


# --- Templates -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("A {product} and {product}", "Position 17: {product} is already used at position 3."),
        ("A {product", "Position 3: this “{” is never closed."),
        ("A product}", "Position 10: this “}” closes nothing."),
        ("A {two words}", "Position 3: “{two words}” is not a variable name."),
    ],
)
def test_a_bad_template_is_refused_with_its_position(client, cast, project, text, message):
    client.force_login(cast.bob)
    response = client.post(reverse("template_create", args=[project.pk]), template_post(text=text))
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not PromptTemplate.objects.exists()
    preview = client.post(
        reverse("template_preview", args=[project.pk]),
        template_post(text=text),
        headers={"HX-Request": "true"},
    )
    assert message in preview.content.decode()


def test_the_template_form_previews_the_exact_prompt_for_sample_values(client, cast, project):
    kit = brand_kit_version(project=project, palette=["#aabbcc"], style_words="bold")
    client.force_login(cast.bob)
    data = template_post(brand_kit=kit.kit.pk, samples="product = linen shirt\nunknown = x")
    response = client.post(
        reverse("template_preview", args=[project.pk]), data, headers={"HX-Request": "true"}
    )
    assert "A linen shirt in [season] light\n\nStyle: bold. Palette: #aabbcc." in response.content.decode()
    # Without htmx the Preview button shows the whole form with the preview.
    page = client.post(reverse("template_preview", args=[project.pk]), data)
    assert page.status_code == 200
    assert "Save template" in page.content.decode()
    assert "A linen shirt in [season] light" in page.content.decode()


def test_a_template_pins_its_kits_newest_version(client, cast, project):
    first = brand_kit_version(project=project)
    second = brand_kit_version(project=project, kit=first.kit, style_words="v2 words")
    client.force_login(cast.bob)
    client.post(reverse("template_create", args=[project.pk]), template_post(brand_kit=first.kit.pk))
    assert TemplateVersion.objects.get().brand_kit_version == second


# --- The Studio ----------------------------------------------------------------------------------------


def test_the_studio_offers_a_field_per_variable_and_the_kits_defaults(client, cast, project):
    kit = brand_kit_version(project=project, defaults={"size_preset": "portrait", "size": "1024x1536"})
    version = template_version(project=project, text="A {product} in {season}", brand_kit_version=kit)
    client.force_login(cast.bob)
    page = client.get(
        f"{reverse('project', args=[project.pk])}?template={version.template.pk}"
    ).content.decode()
    assert 'name="var_product"' in page and 'name="var_season"' in page
    assert f'name="template_version" value="{version.pk}"' in page
    assert '<option value="portrait" selected>' in page
    assert 'name="prompt"' not in page


def test_an_old_versions_page_opens_the_studio_on_that_version(client, cast, project, other_project):
    old = template_version(project=project, text="A {product} in {season}")
    newest = template_version(project=project, template=old.template, text="A {product} at dusk")
    theirs = template_version(project=other_project, text="A {thing}")
    client.force_login(cast.bob)
    detail = client.get(reverse("template_version", args=[project.pk, old.template_id, old.number]))
    studio = (
        f"{reverse('project', args=[project.pk])}?template={old.template_id}&amp;template_version={old.pk}"
    )
    assert f'href="{studio}#generate">Use version 1 in the Studio' in detail.content.decode()

    page = client.get(studio.replace("&amp;", "&")).content.decode()
    assert f'name="template_version" value="{old.pk}"' in page and 'name="var_season"' in page
    # Another project's version (or none) falls back to the template's newest, never crossing projects.
    page = client.get(
        f"{reverse('project', args=[project.pk])}?template={old.template_id}&template_version={theirs.pk}"
    ).content.decode()
    assert f'name="template_version" value="{newest.pk}"' in page and 'name="var_season"' not in page


def test_the_studio_previews_the_exact_prompt(client, cast, project):
    kit = brand_kit_version(project=project, avoid="people")
    version = template_version(project=project, brand_kit_version=kit)
    client.force_login(cast.bob)
    data = GENERATION_POST | {"template_version": version.pk, "var_product": "teapot"}
    response = client.post(reverse("prompt_preview", args=[project.pk]), data, headers={"HX-Request": "true"})
    assert (
        "A teapot on oak\n\nStyle: warm, editorial. Palette: #aabbcc. Avoid: people."
        in response.content.decode()
    )


def test_a_job_from_the_studio_records_its_template_kit_and_values(client, cast, project, no_send):
    kit = brand_kit_version(project=project)
    version = template_version(project=project, text="A {product} in {season}", brand_kit_version=kit)
    client.force_login(cast.bob)
    data = GENERATION_POST | {"template_version": version.pk, "var_product": "mug", "var_season": "spring"}
    del data["prompt"]
    response = client.post(reverse("job_create", args=[project.pk]), data)
    assert response.status_code == 302
    job = Job.objects.get()
    assert job.prompt == "A mug in spring\n\nStyle: warm, editorial. Palette: #aabbcc."
    assert (job.template_version, job.brand_kit_version) == (version, kit)
    assert job.variables == {"product": "mug", "season": "spring"}


def test_a_missing_value_is_a_field_error(client, cast, project, no_send):
    version = template_version(project=project)
    client.force_login(cast.bob)
    response = client.post(
        reverse("job_create", args=[project.pk]), GENERATION_POST | {"template_version": version.pk}
    )
    assert response.status_code == 400
    assert "Fill in {product}." in response.content.decode()
    assert not Job.objects.exists()


def test_a_kit_on_a_plain_prompt_is_composed_and_its_references_make_an_edit(client, cast, project, no_send):
    ref = ReferenceFactory(project=project)
    kit = brand_kit_version(project=project, references=[ref])
    client.force_login(cast.bob)
    response = client.post(
        reverse("job_create", args=[project.pk]), GENERATION_POST | {"brand_kit_version": kit.pk}
    )
    assert response.status_code == 302
    job = Job.objects.get()
    assert job.prompt == f"{GENERATION_POST['prompt']}\n\nStyle: warm, editorial. Palette: #aabbcc."
    assert job.kind == Job.Kind.EDIT
    assert [item.reference for item in job.inputs.all()] == [ref]
    assert (job.brand_kit_version, job.template_version, job.variables) == (kit, None, {})


def test_the_estimate_counts_a_templates_references(client, cast, project):
    version = template_version(project=project, references=[ReferenceFactory(project=project)])
    client.force_login(cast.bob)
    with_ref = client.get(
        reverse("estimate", args=[project.pk]), GENERATION_POST | {"template_version": version.pk}
    )
    plain = client.get(reverse("estimate", args=[project.pk]), GENERATION_POST)
    assert with_ref.status_code == plain.status_code == 200
    assert "Estimated cost" in with_ref.content.decode()
    assert with_ref.content != plain.content  # an input image costs input tokens


# --- What made an output --------------------------------------------------------------------------------


def _bound_image(project, *, campaign=None, **job_fields) -> Image:
    version = job_fields.pop("template_version")
    job = JobFactory(
        project=project,
        succeeded=True,
        template_version=version,
        brand_kit_version=version.brand_kit_version,
        variables={"product": "mug"},
        campaign=campaign,
        **job_fields,
    )
    return ImageFactory(job=job)


def test_the_gallery_filters_by_template_and_by_campaign(client, cast, project):
    shot = template_version(project=project)
    shot_v2 = template_version(project=project, template=shot.template, text="A {product} v2")
    other = template_version(project=project, name="Other")
    campaign = Campaign.objects.create(project=project, author=cast.alice, kind="batch", name="Autumn SKUs")
    first = _bound_image(project, template_version=shot)
    second = _bound_image(project, template_version=shot_v2, campaign=campaign, campaign_row=2)
    third = _bound_image(project, template_version=other)
    plain = ImageFactory(job__project=project)
    client.force_login(cast.vera)
    url = reverse("gallery", args=[project.pk])

    def shown(query: str) -> set[int]:
        response = client.get(f"{url}?{query}")
        assert response.status_code == 200, response.content
        return {image.pk for image in response.context["page"].items}

    assert shown(f"template={shot.template.pk}") == {first.pk, second.pk}  # every version
    assert shown(f"template={other.template.pk}") == {third.pk}
    assert shown(f"campaign={campaign.pk}") == {second.pk}
    assert shown("") == {first.pk, second.pk, third.pk, plain.pk}
    page = client.get(url).content.decode()
    assert "Any template" in page and "Autumn SKUs" in page


def test_another_projects_template_is_no_filter_here(client, cast, project, other_project):
    theirs = template_version(project=other_project)
    client.force_login(cast.alice)
    response = client.get(f"{reverse('gallery', args=[project.pk])}?template={theirs.template.pk}")
    assert response.status_code == 400


def test_the_image_page_links_the_versions_and_shows_the_values(client, cast, project):
    version = template_version(project=project, brand_kit_version=brand_kit_version(project=project))
    campaign = Campaign.objects.create(project=project, author=cast.alice, kind="grid", name="Light test")
    image = _bound_image(project, template_version=version, campaign=campaign, cell={"quality": "high"})
    client.force_login(cast.vera)
    page = client.get(image.get_absolute_url()).content.decode()
    assert f'href="{version.get_absolute_url()}">Product shot, version 1</a>' in page
    assert f'href="{version.brand_kit_version.get_absolute_url()}">House style, version 1</a>' in page
    assert "mug" in page and "Light test" in page and "quality: high" in page


# --- Through a real worker -------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_job_from_a_template_runs_and_its_image_says_so_after_the_template_changes(
    client, cast, project, standin, processes, seeded_prices
):
    """Studio → queue → a worker process → the stand-in; then the image page and metadata.json name the
    versions, and still do, word for word, after the template and kit are edited."""
    kit = brand_kit_version(project=project, avoid="text")
    version = template_version(project=project, text="A {product} in {season}", brand_kit_version=kit)
    processes.worker("only")
    client.force_login(cast.bob)
    data = GENERATION_POST | {"template_version": version.pk, "var_product": "mug", "var_season": "autumn"}
    assert client.post(reverse("job_create", args=[project.pk]), data).status_code == 302
    job = Job.objects.get()
    wait_for(
        lambda: Job.objects.get(pk=job.pk).status == Job.Status.SUCCEEDED, timeout=30, what="the job to run"
    )
    sent = "A mug in autumn\n\nStyle: warm, editorial. Palette: #aabbcc. Avoid: text."
    [image_call] = [
        r for r in standin.requests if r.path.startswith("/v1/images/")
    ]  # not the credential check
    assert image_call.fields["prompt"] == sent

    template_version(project=project, template=version.template, text="Another {thing}")
    brand_kit_version(project=project, kit=kit.kit, style_words="changed")

    image = Image.objects.get(job=job)
    page = client.get(image.get_absolute_url()).content.decode()
    assert "Product shot, version 1</a>" in page and "House style, version 1</a>" in page
    assert "autumn" in page

    response = client.post(reverse("bulk", args=[project.pk]), {"action": "download", "ids": [image.pk]})
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    record = json.loads(archive.read("metadata.json"))["images"][0]
    assert record["prompt"] == sent
    assert record["made_with"] == {
        "template": {
            "id": version.template_id,
            "name": "Product shot",
            "version": 1,
            "text": "A {product} in {season}",
        },
        "variables": {"product": "mug", "season": "autumn"},
        "brand_kit": {"id": kit.kit_id, "name": "House style", "version": 1},
        "campaign": None,
    }
    assert campaigns.inputs_for(template_version=version) == []


# --- The API ------------------------------------------------------------------------------------------


def test_the_api_lists_templates_and_an_image_says_what_made_it(client, cast, project):
    from workspace.api.tokens import token_create

    kit = brand_kit_version(project=project)
    ref = ReferenceFactory(project=project)
    version = template_version(project=project, brand_kit_version=kit, references=[ref])
    template_version(project=project, template=version.template, text="A {product} v2", brand_kit_version=kit)
    image = _bound_image(project, template_version=version)
    secret = token_create(user=cast.vera, name="read", scopes=["read"]).secret
    auth = {"Authorization": f"Bearer {secret}"}

    listed = client.get(reverse("api:template-list", args=[project.pk]), headers=auth)
    assert listed.status_code == 200
    [template] = listed.json()
    assert template["name"] == "Product shot"
    assert template["latest"]["number"] == 2
    assert template["latest"]["text"] == "A {product} v2"
    assert template["latest"]["variables"] == ["product"]
    assert template["latest"]["brand_kit"] == {"id": kit.kit_id, "name": "House style", "version": 1}

    detail = client.get(reverse("api:image-detail", args=[project.pk, image.pk]), headers=auth).json()
    assert detail["made_with"]["template"] == {
        "id": version.template_id,
        "name": "Product shot",
        "version": 1,
        "text": "A {product} on oak",
    }
    assert detail["made_with"]["variables"] == {"product": "mug"}


def test_the_gallery_with_a_template_or_campaign_filter_stays_within_four_queries(
    client, cast, project, django_assert_max_num_queries
):
    version = template_version(project=project)
    campaign = Campaign.objects.create(project=project, author=cast.alice, kind="batch", name="SKUs")
    for _ in range(3):
        _bound_image(project, template_version=version, campaign=campaign)
    client.force_login(cast.alice)
    url = reverse("gallery", args=[project.pk])
    client.get(url)  # the session lands in the cache
    for query in ({}, {"template": version.template.pk}, {"campaign": campaign.pk}):
        with django_assert_max_num_queries(4):
            response = client.get(url, query)
        assert response.status_code == 200
        assert len(response.context["page"].items) == 3


# --- A template's default parameters and default values ----------------------------------------------


def test_a_template_saves_its_model_effort_and_default_values(client, cast, project):
    client.force_login(cast.bob)
    data = template_post(
        default_model="gpt-image-2.5-sunburst",
        default_quality="xhigh",
        default_complexity="high",
        default_size="story",
        samples="product = linen shirt\nseason = ",
    )
    response = client.post(reverse("template_create", args=[project.pk]), data)
    assert response.status_code == 302, response.content[:800]
    version = TemplateVersion.objects.get()
    assert version.defaults == {
        "model": "gpt-image-2.5-sunburst",
        "quality": "xhigh",
        "complexity": "high",
        "size_preset": "story",
        "size": "1152x2048",
    }
    assert version.samples == {"product": "linen shirt"}
    page = client.get(version.template.get_absolute_url()).content.decode()
    assert "<code>{product}</code> = linen shirt" in page
    # The edit form starts from them, and its preview uses and names them.
    form = client.get(reverse("template_edit", args=[project.pk, version.template.pk])).content.decode()
    assert '<option value="gpt-image-2.5-sunburst" selected>' in form
    assert '<option value="high" selected>High</option>' in form
    assert "product = linen shirt\nseason = </textarea>" in form
    assert "A linen shirt in [season] light" in form
    assert 'data-testid="preview-defaults">Default values: <code>{product}</code> = linen shirt</p>' in form

    # Clearing them saves a version without them; version 1 keeps its own.
    cleared = template_post(samples="product =\nseason =")
    client.post(reverse("template_edit", args=[project.pk, version.template.pk]), cleared)
    newest = version.template.versions.get(number=2)
    assert newest.defaults == {} and newest.samples == {}
    version.refresh_from_db()
    assert (
        version.samples == {"product": "linen shirt"}
        and version.defaults["model"] == "gpt-image-2.5-sunburst"
    )


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        (
            {"default_model": "gpt-image-1.5", "default_complexity": "high"},
            "default_complexity",
            "GPT Image 1.5 does not take a planning effort.",
        ),
        ({"default_quality": "xhigh"}, "default_quality", "GPT Image 2 does not offer xhigh quality."),
        (
            {"default_model": "gpt-image-1-mini", "default_size": "story"},
            "default_size",
            "GPT Image 1 mini cannot make story 9:16 images.",
        ),
        (
            {"default_model": "gpt-image-2", "default_format": "gif"},
            "default_format",
            "GPT Image 2 cannot make GIF images.",
        ),
        ({"default_model": "gpt-image-1"}, "default_model", "Select a valid choice."),
        ({"samples": "colour = red"}, "samples", "The template has no variable {colour}"),
    ],
)
def test_defaults_the_model_does_not_allow_are_field_errors(client, cast, project, fields, field, message):
    client.force_login(cast.bob)
    response = client.post(reverse("template_create", args=[project.pk]), template_post(**fields))
    assert response.status_code == 400
    assert message in " ".join(response.context["form"].errors[field])
    assert not TemplateVersion.objects.exists()


def test_the_studio_starts_from_a_templates_defaults_and_default_values(client, cast, project):
    version = template_version(
        project=project,
        text="A {product} in {season}",
        defaults={"model": "gpt-image-2.5-flare", "complexity": "medium", "output_format": "webp"},
        samples={"season": "winter"},
    )
    client.force_login(cast.bob)
    page = client.get(
        f"{reverse('project', args=[project.pk])}?template={version.template.pk}"
    ).content.decode()
    assert '<option value="gpt-image-2.5-flare" selected>' in page
    assert '<option value="medium" selected>' in page
    assert '<option value="webp" selected>' in page
    assert 'name="var_season" value="winter"' in page
    # A variable without a default value starts empty.
    product = re.search(r'<input[^>]*name="var_product"[^>]*>', page).group(0)
    assert "value=" not in product
