"""Templates as text: parsing (every bad template is refused with its position), rendering, and the one
way a brand kit is composed into a prompt."""

from types import SimpleNamespace

import pytest

from workspace import prompting
from workspace.imagemodels import MAX_PROMPT_CHARS
from workspace.prompting import TemplateProblem, Variable


def kit(**fields):
    return SimpleNamespace(**({"style_words": "", "art_direction": "", "palette": [], "avoid": ""} | fields))


def test_it_finds_variables_in_order_of_appearance():
    parsed = prompting.parse_template("A {product} in {season} light, {mood_2}")
    assert parsed.variables == ["product", "season", "mood_2"]
    assert parsed.pieces == (
        "A ",
        Variable("product"),
        " in ",
        Variable("season"),
        " light, ",
        Variable("mood_2"),
    )


def test_it_reads_doubled_braces_as_literal_braces():
    parsed = prompting.parse_template("Logo text {{brand}} and }} then {name}")
    assert parsed.variables == ["name"]
    assert prompting.render("Logo text {{brand}} and }} then {name}", {"name": "x"}) == (
        "Logo text {brand} and } then x"
    )


def test_a_template_without_variables_is_its_own_prompt():
    assert prompting.parse_template("plain words").variables == []
    assert prompting.render("plain words", {}) == "plain words"


@pytest.mark.parametrize(
    ("text", "position", "words"),
    [
        ("A {product} and {product}", 17, "already used at position 3"),
        ("A {product", 3, "never closed"),
        ("A {product {season}", 3, "never closed"),
        ("A product}", 10, "closes nothing"),
        ("{}", 1, "not a variable name"),
        ("x {two words}", 3, "not a variable name"),
        ("x {9lives}", 3, "not a variable name"),
        ("x {caf\u00e9}", 3, "not a variable name"),
        ("x {" + "a" * 41 + "}", 3, "not a variable name"),
        ("{{ ok }} but {", 14, "never closed"),
    ],
)
def test_it_refuses_a_bad_template_with_the_position(text, position, words):
    with pytest.raises(TemplateProblem) as problem:
        prompting.parse_template(text)
    assert problem.value.position == position
    assert f"Position {position}:" in problem.value.message
    assert words in problem.value.message


def test_rendering_names_every_missing_value():
    with pytest.raises(TemplateProblem) as problem:
        prompting.render("A {product} in {season} for {who}", {"product": "mug", "season": "  "})
    assert "{season}, {who}" in problem.value.message
    assert "{product}" not in problem.value.message
    assert problem.value.position is None


def test_values_go_in_as_they_are_and_extra_values_are_ignored():
    text = prompting.render("A {product}.", {"product": " {weird} mug ", "unused": "x"})
    assert text == "A {weird} mug."


def test_render_takes_a_version_too():
    version = SimpleNamespace(text="Hello {name}")
    assert prompting.render(version, {"name": "Ana"}) == "Hello Ana"


def test_a_kit_adds_one_visible_line_after_a_blank_line():
    brand = kit(
        style_words="warm, editorial.",
        art_direction="Soft window light,\nshallow depth of field",
        palette=["#aabbcc", "#112233"],
        avoid="text, logos",
    )
    assert prompting.compose_with_kit("  A mug on oak. ", brand) == (
        "A mug on oak.\n\n"
        "Style: warm, editorial. Art direction: Soft window light, shallow depth of field. "
        "Palette: #aabbcc, #112233. Avoid: text, logos."
    )


def test_a_kit_leaves_out_its_empty_parts():
    assert prompting.compose_with_kit("A mug", kit(avoid="people")) == "A mug\n\nAvoid: people."
    assert prompting.compose_with_kit("A mug", kit()) == "A mug"
    assert prompting.compose_with_kit("A mug", None) == "A mug"


def test_prompt_for_renders_then_composes_with_the_templates_kit():
    version = SimpleNamespace(text="A {product}", brand_kit_version=kit(style_words="bold"))
    assert prompting.prompt_for(template_version=version, values={"product": "lamp"}) == (
        "A lamp\n\nStyle: bold."
    )
    other = kit(style_words="quiet")
    assert prompting.prompt_for(template_version=version, values={"product": "lamp"}, kit_version=other) == (
        "A lamp\n\nStyle: quiet."
    )


def test_prompt_for_refuses_a_prompt_too_long_and_names_its_length():
    version = SimpleNamespace(text="A {product}", brand_kit_version=kit(style_words="bold"))
    with pytest.raises(TemplateProblem) as problem:
        prompting.prompt_for(template_version=version, values={"product": "x" * MAX_PROMPT_CHARS})
    assert f"{MAX_PROMPT_CHARS + 2 + 2 + len('Style: bold.'):,} characters" in problem.value.message


@pytest.mark.parametrize(
    ("palette", "problem"),
    [
        (["#aabbcc", "#A1B2C3"], None),
        (["#abc"], "Colour 1"),
        (["#aabbcc", "red"], "Colour 2"),
        (["#aabbcc\n"], "Colour 1"),
        ([7], "Colour 1"),
    ],
)
def test_a_palette_is_hex_colours(palette, problem):
    found = prompting.palette_problem(palette)
    assert (found is None) if problem is None else (problem in found)
