"""SVG answers made safe to show: a strict allow-list, applied before anything is stored.

An SVG is a document that can run script (`<script>`, `onload=`), fetch from elsewhere (`href`, `url()`,
`@import`) and embed HTML (`foreignObject`). The model writes ours, but its prompt is ours to influence
and the bytes are OpenAI's to send, so an answer is treated like an upload: parsed with defusedxml (no
DTDs, entities or external references, so no billion laughs or XXE), then rebuilt from scratch keeping only
drawing elements and presentation attributes we name, with links only to fragments of the same document.
An allow-list rather than a block-list because SVG and CSS keep growing ways to run or fetch; a new one
is dropped here until someone adds it on purpose. (bleach and nh3 clean HTML, not SVG; there is no well-kept
SVG sanitiser on PyPI that does less than this.) What comes out is also served only as an image, from a
response with `Content-Security-Policy: default-src 'none'; sandbox` and `nosniff`.
"""

import math
import re
from xml.etree import ElementTree as ET

from defusedxml import ElementTree as SafeET
from defusedxml.common import DefusedXmlException

SVG_NS = "http://www.w3.org/2000/svg"
XLINK_NS = "http://www.w3.org/1999/xlink"
MAX_SVG_BYTES = 8 * 1024 * 1024
MAX_ELEMENTS = 100_000
# Elements drawn once each <use> is expanded: 20,000 take cairosvg ~3 s; an honest drawing is far
# below it, and a few hundred bytes of nested <use> can otherwise ask for billions.
MAX_DRAWN = 20_000
# Nesting: the copy (and ElementTree's writer, and cairosvg) recurse once per level.
MAX_DEPTH = 256

ELEMENTS = frozenset(
    {
        *("svg", "g", "defs", "title", "desc", "symbol", "use"),
        *("path", "rect", "circle", "ellipse", "line", "polyline", "polygon"),
        *("linearGradient", "radialGradient", "stop", "pattern", "clipPath", "mask"),
        *("text", "tspan", "filter", "feGaussianBlur", "feOffset", "feBlend", "feFlood", "feComposite"),
        *("feMerge", "feMergeNode", "feColorMatrix", "feDropShadow"),
    }
)
# Geometry and presentation only: no event handlers, no `style` element, no script-bearing attributes.
ATTRIBUTES = frozenset(
    {
        *("id", "class", "x", "y", "x1", "y1", "x2", "y2", "cx", "cy", "r", "rx", "ry", "fx", "fy"),
        *("width", "height", "viewBox", "preserveAspectRatio", "d", "points", "transform", "pathLength"),
        *("fill", "fill-opacity", "fill-rule", "stroke", "stroke-width", "stroke-opacity", "stroke-linecap"),
        *("stroke-linejoin", "stroke-miterlimit", "stroke-dasharray", "stroke-dashoffset", "opacity"),
        *("color", "display", "visibility", "clip-path", "clip-rule", "mask", "filter", "style"),
        *("offset", "stop-color", "stop-opacity", "gradientUnits", "gradientTransform", "spreadMethod"),
        *("patternUnits", "patternContentUnits", "patternTransform", "clipPathUnits", "maskUnits"),
        *("maskContentUnits", "font-family", "font-size", "font-weight", "font-style", "text-anchor"),
        *("dominant-baseline", "letter-spacing", "dx", "dy", "rotate", "in", "in2", "result", "mode"),
        *("stdDeviation", "type", "values", "operator", "k1", "k2", "k3", "k4", "flood-color"),
        *("flood-opacity", "filterUnits", "primitiveUnits", "version", "href"),
    }
)
# CSS properties allowed inside a style attribute: the presentation attributes above, nothing that loads.
STYLE_PROPERTIES = ATTRIBUTES - {"id", "class", "style", "href", "d", "points", "transform", "viewBox"}
LOCAL_URL = re.compile(r"url\(\s*['\"]?#[\w.:-]+['\"]?\s*\)")
# What can fetch or run in a CSS value once local url(#…) is taken out. A backslash is refused outright:
# CSS reads escapes in style and presentation attributes alike, so `\75 rl(` is url( and `\3a` a colon,
# and no drawing needs one. CSS images (a mask may be any) load from a bare string through image-set(),
# cross-fade() or image(), src() is url() by another name, and element() shows another part of a page.
ANY_URL = re.compile(
    r"\\|url\s*\(|src\s*\(|image(-set)?\s*\(|cross-fade\s*\(|element\s*\("
    r"|@import|expression\s*\(|javascript:|data:",
    re.IGNORECASE,
)


class UnsafeSvg(ValueError):
    """Not an SVG we can read; the answer is refused like an unreadable image."""


def _local_name(tag: str) -> tuple[str, str]:
    if tag.startswith("{"):
        namespace, _, name = tag[1:].partition("}")
        return namespace, name
    return "", tag


def _safe_value(value: str) -> bool:
    """A value that fetches nothing and runs nothing: url(#fragment) is the only url() kept."""
    return not ANY_URL.search(LOCAL_URL.sub("", value))


def _clean_style(value: str) -> str:
    kept = []
    for declaration in value.split(";"):
        name, colon, rest = declaration.partition(":")
        name = name.strip().lower()
        if colon and name in STYLE_PROPERTIES and _safe_value(rest):
            kept.append(f"{name}:{rest.strip()}")
    return ";".join(kept)


def _clean_attributes(source: ET.Element) -> dict[str, str]:
    clean: dict[str, str] = {}
    for raw_name, value in source.attrib.items():
        namespace, name = _local_name(raw_name)
        if namespace not in ("", XLINK_NS) or name not in ATTRIBUTES:
            continue  # on*, xml:base, foreign namespaces, anything not named above
        if name == "href":
            if not value.strip().startswith("#"):
                continue  # another document, an image, a data: or javascript: URL
            clean["href"] = value.strip()
            continue
        if name == "style":
            value = _clean_style(value)
            if not value:
                continue
        elif not _safe_value(value):
            continue
        clean[name] = value
    return clean


def _copy(source: ET.Element, counter: list[int], depth: int = 0) -> ET.Element | None:
    namespace, name = _local_name(source.tag) if isinstance(source.tag, str) else ("", "")
    if namespace != SVG_NS or name not in ELEMENTS:
        return None  # script, style, foreignObject, image, a, animate/set, iframe, HTML: dropped whole
    counter[0] += 1
    if counter[0] > MAX_ELEMENTS:
        raise UnsafeSvg(f"more than {MAX_ELEMENTS} elements")
    if depth > MAX_DEPTH:
        raise UnsafeSvg(f"elements nested more than {MAX_DEPTH} deep")
    target = ET.Element(f"{{{SVG_NS}}}{name}", _clean_attributes(source))
    if name in ("text", "tspan", "title", "desc"):
        target.text = source.text
    for child in source:
        copied = _copy(child, counter, depth + 1)
        if copied is not None:
            target.append(copied)
            if name in ("text", "tspan"):
                copied.tail = child.tail
    return target


def _count_drawn(root: ET.Element) -> int:
    """How many elements a renderer draws, each <use> counted as the tree it shows; raises UnsafeSvg past
    MAX_DRAWN or when a <use> shows itself. Walked without recursion, so a long chain cannot overflow."""
    by_id = {element.get("id"): element for element in root.iter() if element.get("id")}
    drawn: dict[int, int] = {}
    # Depth first, each element entered once and left once; its total is known when it is left.
    stack: list[tuple[ET.Element, bool]] = [(root, False)]
    entered: set[int] = set()
    while stack:
        element, leaving = stack.pop()
        key = id(element)
        target = None
        href = element.get("href", "")
        if element.tag == f"{{{SVG_NS}}}use" and href.startswith("#"):
            target = by_id.get(href[1:])
        parts = [*element, *([target] if target is not None else [])]
        if leaving:
            entered.discard(key)
            drawn[key] = 1 + sum(drawn[id(part)] for part in parts)
            if drawn[key] > MAX_DRAWN:
                raise UnsafeSvg(f"its <use> references would draw more than {MAX_DRAWN:,} elements")
            continue
        if key in drawn:
            continue
        entered.add(key)
        stack.append((element, True))
        for part in parts:
            if id(part) in entered:
                raise UnsafeSvg("a <use> shows an element that contains it")
            if id(part) not in drawn:
                stack.append((part, False))
    return drawn[id(root)]


def sanitise(data: bytes) -> bytes:
    """The SVG rebuilt from allowed elements and attributes only, as UTF-8; raises UnsafeSvg if it cannot
    be read as an SVG at all."""
    if len(data) > MAX_SVG_BYTES:
        raise UnsafeSvg(f"larger than {MAX_SVG_BYTES // (1024 * 1024)} MB")
    try:
        root = SafeET.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (ET.ParseError, DefusedXmlException, ValueError) as error:
        raise UnsafeSvg(f"not readable XML: {error}") from error
    if root.tag != f"{{{SVG_NS}}}svg":
        raise UnsafeSvg("the document is not an <svg>")
    clean = _copy(root, [0])
    assert clean is not None
    _count_drawn(clean)
    ET.register_namespace("", SVG_NS)
    return ET.tostring(clean, encoding="utf-8", xml_declaration=True)


def _number(text: str) -> float | None:
    # The sanitiser keeps lengths as written, so "1.2.3", "..." or "nan" reach here; they mean no size.
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value > 0 else None


def _length(value: str | None) -> float | None:
    match = re.fullmatch(r"\s*([0-9.]+)\s*(px)?\s*", value or "")
    return _number(match.group(1)) if match else None


def dimensions(clean: bytes, *, default: tuple[int, int] = (1024, 1024)) -> tuple[int, int]:
    """Width and height in pixels from the root's width/height, else its viewBox, else `default`."""
    root = SafeET.fromstring(clean)
    width, height = _length(root.get("width")), _length(root.get("height"))
    if not (width and height):
        box = (root.get("viewBox") or "").replace(",", " ").split()
        width, height = (_number(box[2]), _number(box[3])) if len(box) == 4 else (None, None)
    if not (width and height) or width > 20_000 or height > 20_000:
        return default
    return max(1, round(width)), max(1, round(height))
