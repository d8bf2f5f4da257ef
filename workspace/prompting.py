"""Prompt templates and brand kits as text: parse, fill in, compose. Pure functions, no database.

A template is text with named variables in braces: "A {product} on a table, {season} light". Names are
ASCII identifiers (letters, digits and _, not starting with a digit). `{{` and `}}` stand for literal
braces. Each variable appears once: a template that names one twice is refused, as is a brace that is
not closed or not opened. Positions in messages count characters from 1, as a person reads them.

A brand kit is added to a prompt in one way only, so what is sent can always be read back:

    <the prompt>

    Style: <style words>. Art direction: <art direction>. Palette: #aabbcc, #112233. Avoid: <avoid>.

A blank line, then one line of the kit's parts that are filled in (empty ones are left out; a kit with
none leaves the prompt as it is). Each part ends with one full stop; line breaks inside a part become
spaces.
"""

import re
from dataclasses import dataclass
from typing import Protocol

from workspace.imagemodels import MAX_PROMPT_CHARS

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
MAX_NAME_CHARS = 40
HEX_COLOUR = re.compile(r"#[0-9a-fA-F]{6}\Z")


class TemplateProblem(ValueError):
    """A template that cannot be parsed or filled in. `position` is 1-based, or None when the problem
    is not at one place (a missing value, a prompt too long)."""

    def __init__(self, message: str, position: int | None = None) -> None:
        self.message = message
        self.position = position
        super().__init__(message)


@dataclass(frozen=True)
class Variable:
    name: str


@dataclass(frozen=True)
class Parsed:
    """A template split into literal text and variables, in order."""

    pieces: tuple[str | Variable, ...]

    @property
    def variables(self) -> list[str]:
        return [piece.name for piece in self.pieces if isinstance(piece, Variable)]


class KitLike(Protocol):
    style_words: str
    art_direction: str
    palette: list
    avoid: str


def parse_template(text: str) -> Parsed:
    """Split `text` into literals and variables, or raise TemplateProblem saying where and why."""
    pieces: list[str | Variable] = []
    literal: list[str] = []
    seen: dict[str, int] = {}
    i = 0
    while i < len(text):
        char = text[i]
        if char == "{" and text.startswith("{{", i):
            literal.append("{")
            i += 2
        elif char == "}" and text.startswith("}}", i):
            literal.append("}")
            i += 2
        elif char == "}":
            raise TemplateProblem(
                f"Position {i + 1}: this “}}” closes nothing. Write “}}}}” for a brace in the prompt.",
                i + 1,
            )
        elif char == "{":
            end = text.find("}", i + 1)
            opened = text.find("{", i + 1)
            if end == -1 or (opened != -1 and opened < end):
                raise TemplateProblem(
                    f"Position {i + 1}: this “{{” is never closed. Close it with “}}” or write “{{{{” "
                    "for a brace in the prompt.",
                    i + 1,
                )
            name = text[i + 1 : end]
            if not NAME.match(name) or len(name) > MAX_NAME_CHARS:
                shown = name if len(name) <= 30 else name[:30] + "…"
                raise TemplateProblem(
                    f"Position {i + 1}: “{{{shown}}}” is not a variable name. Names use letters, digits "
                    f"and _ (up to {MAX_NAME_CHARS}), and do not start with a digit; write “{{{{” for a "
                    "brace in the prompt.",
                    i + 1,
                )
            if name in seen:
                raise TemplateProblem(
                    f"Position {i + 1}: {{{name}}} is already used at position {seen[name]}. Each "
                    "variable may appear once; give the second one another name.",
                    i + 1,
                )
            seen[name] = i + 1
            if literal:
                pieces.append("".join(literal))
                literal = []
            pieces.append(Variable(name))
            i = end + 1
        else:
            literal.append(char)
            i += 1
    if literal:
        pieces.append("".join(literal))
    return Parsed(tuple(pieces))


def render(version_or_text, values: dict[str, str]) -> str:
    """The template (a TemplateVersion or its text) with each variable replaced by its value.

    Values are inserted as they are (braces in a value stay braces). A variable without a value, or
    with only spaces, raises TemplateProblem naming every one missing; values for names the template
    does not have are ignored (callers that must refuse them compare with `Parsed.variables`).
    """
    text = version_or_text if isinstance(version_or_text, str) else version_or_text.text
    parsed = parse_template(text)
    missing = [name for name in parsed.variables if not str(values.get(name) or "").strip()]
    if missing:
        names = ", ".join(f"{{{name}}}" for name in missing)
        raise TemplateProblem(f"Fill in {names}: {'it has' if len(missing) == 1 else 'they have'} no value.")
    return "".join(
        str(values[piece.name]).strip() if isinstance(piece, Variable) else piece for piece in parsed.pieces
    )


def _sentence(label: str, words: str) -> str:
    words = " ".join(words.split()).rstrip(". ")
    return f"{label}: {words}." if words else ""


def kit_line(kit_version: KitLike) -> str:
    """The one line a kit adds to a prompt (empty when the kit has nothing to say)."""
    parts = [
        _sentence("Style", kit_version.style_words),
        _sentence("Art direction", kit_version.art_direction),
        _sentence("Palette", ", ".join(kit_version.palette or [])),
        _sentence("Avoid", kit_version.avoid),
    ]
    return " ".join(part for part in parts if part)


def compose_with_kit(prompt: str, kit_version: KitLike | None) -> str:
    """The prompt, then a blank line and the kit's line (see the module docstring)."""
    line = kit_line(kit_version) if kit_version is not None else ""
    prompt = prompt.strip()
    return f"{prompt}\n\n{line}" if line else prompt


def check_length(prompt: str) -> str:
    if len(prompt) > MAX_PROMPT_CHARS:
        raise TemplateProblem(
            f"The prompt would be {len(prompt):,} characters; the most a model takes is "
            f"{MAX_PROMPT_CHARS:,}. Shorten the template, the values or the kit."
        )
    return prompt


def prompt_for(*, template_version, values: dict[str, str], kit_version: KitLike | None = None) -> str:
    """Exactly what is sent for a template version and values: rendered, then composed with
    `kit_version` if given, else the template's own kit. Raises TemplateProblem (also when too long)."""
    kit = kit_version if kit_version is not None else template_version.brand_kit_version
    return check_length(compose_with_kit(render(template_version, values), kit))


def palette_problem(colours: list[str]) -> str | None:
    """Why a palette is not a list of "#rrggbb" colours; None when it is."""
    for position, colour in enumerate(colours, start=1):
        if not isinstance(colour, str) or not HEX_COLOUR.match(colour):
            return f"Colour {position} (“{str(colour)[:20]}”) is not a hex colour like #1a2b3c."
    return None
