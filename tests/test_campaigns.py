"""The campaign core: versions that never change, and jobs from templates and kits that say what made
them (prompt, parameters, inputs and the binding), checked on the rows the service writes."""

import pytest
from django.db import IntegrityError

from tests.factories import ReferenceFactory, brand_kit_version, template_version
from workspace import campaigns, kits, prompting
from workspace.campaign_models import BrandKitVersion, PromptTemplate, TemplateVersion
from workspace.edits import EditRefused
from workspace.models import Job

pytestmark = pytest.mark.django_db


def test_it_numbers_versions_and_keeps_old_ones_as_they_were(project):
    first = template_version(project=project, text="A {product} on oak")
    second = template_version(
        project=project, template=first.template, name="Product on oak", text="A {product} on {wood}"
    )
    assert (first.number, second.number) == (1, 2)
    first.refresh_from_db()
    assert first.text == "A {product} on oak"
    assert first.variables == ["product"]
    assert second.variables == ["product", "wood"]
    assert second.template.latest == second
    assert PromptTemplate.objects.get().name == "Product on oak"


def test_a_saved_version_refuses_to_change(project):
    version = brand_kit_version(project=project)
    version.style_words = "cold"
    with pytest.raises(ValueError, match="never changed"):
        version.save()
    assert BrandKitVersion.objects.get().style_words == "warm, editorial"


def test_two_versions_cannot_share_a_number(project):
    version = template_version(project=project)
    with pytest.raises(IntegrityError):
        TemplateVersion.objects.create(
            template=version.template, number=1, text="x", created_by=project.created_by
        )


def test_a_bad_template_saves_nothing(project):
    with pytest.raises(prompting.TemplateProblem) as problem:
        template_version(project=project, text="A {product} and {product}")
    assert problem.value.position == 17
    assert not PromptTemplate.objects.exists()


def test_a_bad_palette_saves_nothing(project):
    with pytest.raises(ValueError, match="Colour 2"):
        brand_kit_version(project=project, palette=["#aabbcc", "teal"])
    assert not BrandKitVersion.objects.exists()


def test_references_of_another_project_are_refused(project, other_project):
    stranger = ReferenceFactory(project=other_project)
    with pytest.raises(ValueError, match="another project"):
        brand_kit_version(project=project, references=[stranger])


def test_defaults_are_only_the_fields_a_kit_may_set(project):
    with pytest.raises(ValueError, match="model"):
        brand_kit_version(project=project, defaults={"model": "gpt-image-1.5"})


def test_job_params_layer_form_kit_template_and_overrides(project):
    brand = brand_kit_version(
        project=project, defaults={"quality": "high", "output_format": "webp", "size_preset": "portrait"}
    )
    version = template_version(
        project=project, brand_kit_version=brand, defaults={"size": "1536x864", "quality": "medium"}
    )
    params = campaigns.job_params_for(
        template_version=version, values={"product": "mug"}, overrides={"quality": "low", "n": 2}
    )
    assert params["quality"] == "low"  # the override wins
    assert params["output_format"] == "webp"  # the kit's, not overridden
    assert params["output_compression"] == 100  # the form fills it for webp
    assert (params["size_preset"], params["size"]) == ("custom", "1536x864")  # the template's size
    assert params["n"] == 2
    assert params["model"] == "gpt-image-2"
    assert set(params) == set(Job.REQUEST_FIELDS)

    preset = campaigns.job_params_for(
        template_version=version, values={"product": "mug"}, overrides={"size_preset": "landscape"}
    )
    assert (preset["size_preset"], preset["size"]) == ("landscape", "1536x1024")


def test_job_params_are_checked_like_the_studio_form(project):
    version = template_version(project=project)
    with pytest.raises(campaigns.ParamsProblem) as problem:
        campaigns.job_params_for(
            template_version=version,
            values={"product": "mug"},
            overrides={"model": "gpt-image-1.5", "size_preset": "story"},
        )
    assert "size" in problem.value.errors
    assert "story" in str(problem.value)
    with pytest.raises(prompting.TemplateProblem, match="product"):
        campaigns.job_params_for(template_version=version, values={}, overrides={})


def test_inputs_are_the_templates_references_then_the_kits(project):
    style = ReferenceFactory(project=project)
    product = ReferenceFactory(project=project)
    brand = brand_kit_version(project=project, references=[style, product])
    version = template_version(project=project, brand_kit_version=brand, references=[product])
    assert campaigns.inputs_for(template_version=version) == [product, style]
    assert campaigns.inputs_for(template_version=None, brand_kit_version=brand) == [style, product]
    assert campaigns.inputs_for(template_version=template_version(project=project, name="t2")) == []


def test_an_input_missing_from_storage_is_refused(project):
    from django.core.files.storage import default_storage

    ref = ReferenceFactory(project=project)
    version = template_version(project=project, references=[ref])
    default_storage.delete(ref.file.name)
    with pytest.raises(EditRefused, match=ref.name):
        campaigns.inputs_for(template_version=version)


def test_a_job_from_a_template_records_what_made_it(project, cast, monkeypatch):
    monkeypatch.setattr("workspace.jobs._enqueue", lambda job_id: None)
    brand = brand_kit_version(project=project, avoid="text")
    version = template_version(project=project, text="A {product} in {season}", brand_kit_version=brand)
    job = campaigns.template_job_create(
        template_version=version,
        author=cast.bob,
        values={"product": " mug ", "season": "autumn", "ignored": "x"},
        overrides={"quality": "low"},
    )
    job.refresh_from_db()
    assert job.prompt == "A mug in autumn\n\nStyle: warm, editorial. Palette: #aabbcc. Avoid: text."
    assert job.template_version == version
    assert job.brand_kit_version == brand
    assert job.variables == {"product": "mug", "season": "autumn"}
    assert (job.kind, job.lane, job.quality) == (Job.Kind.GENERATE, Job.Lane.INTERACTIVE, "low")
    assert job.campaign is None and job.cell == {}


def test_a_template_with_references_makes_an_edit(project, cast, monkeypatch):
    monkeypatch.setattr("workspace.jobs._enqueue", lambda job_id: None)
    ref = ReferenceFactory(project=project)
    version = template_version(project=project, references=[ref])
    job = campaigns.template_job_create(
        template_version=version, author=cast.bob, values={"product": "mug"}, lane=Job.Lane.BULK
    )
    assert job.kind == Job.Kind.EDIT
    assert job.lane == Job.Lane.BULK
    assert [item.reference for item in job.inputs.all()] == [ref]
    assert "moderation" not in job.api_params()


def test_a_kit_chosen_for_a_plain_prompt_composes_and_binds(project, cast, monkeypatch):
    monkeypatch.setattr("workspace.jobs._enqueue", lambda job_id: None)
    brand = brand_kit_version(project=project)
    prompt = campaigns.final_prompt(
        template_version=None, values={}, brand_kit_version=brand, prompt="A lamp"
    )
    params = campaigns.job_params_for(
        template_version=None, values={}, overrides={}, brand_kit_version=brand, prompt="A lamp"
    )
    job = campaigns.bound_job_create(
        project=project, author=cast.bob, prompt=prompt, params=params, brand_kit_version=brand
    )
    assert job.prompt == "A lamp\n\nStyle: warm, editorial. Palette: #aabbcc."
    assert (job.brand_kit_version, job.template_version, job.variables) == (brand, None, {})


def test_another_projects_version_is_refused(project, other_project, cast):
    version = template_version(project=other_project)
    with pytest.raises(ValueError, match="not part of project"):
        campaigns.bound_job_create(
            project=project, author=cast.bob, prompt="x", params={}, template_version=version
        )


def test_reproduce_keeps_the_binding(project, cast, monkeypatch):
    from workspace import jobs

    monkeypatch.setattr("workspace.jobs._enqueue", lambda job_id: None)
    version = template_version(project=project)
    job = campaigns.template_job_create(template_version=version, author=cast.bob, values={"product": "mug"})
    again = jobs.job_reproduce(job=job, author=cast.alice)
    assert (again.template_version, again.variables) == (version, {"product": "mug"})


def test_archiving_hides_nothing_that_was_made(project):
    version = template_version(project=project)
    kits.archive(version.template, archived=True)
    assert PromptTemplate.objects.get().archived_at is not None
    assert TemplateVersion.objects.get() == version
