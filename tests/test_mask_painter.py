"""The mask painter (static/js/mask.js) in headless Chromium, on a static page served over plain HTTP.

No Django server: the page is the edit form's DOM contract around a generated 640x480 PNG, so what is
checked is the PNG the browser would upload, read back from the file input and opened with Pillow.
"""

import base64
import email.parser
import email.policy
import functools
import io
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image, ImageDraw
from playwright.sync_api import expect, sync_playwright

pytestmark = pytest.mark.browser
# Generous, for a loaded CI machine: each wait normally ends in well under a second.
TIMEOUT = 15_000  # ms

STATIC = Path(__file__).resolve().parent.parent / "static"
WIDTH, HEIGHT = 640, 480
DEFAULT_SIZE = round(min(WIDTH, HEIGHT) * 0.06)  # 29 px in image pixels
NO_MASK = "No mask: the whole image may change."
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]

PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Mask painter</title>
  <link rel="icon" href="data:,">
  <link rel="stylesheet" href="app.css">
  <link rel="stylesheet" href="mask.css">
  <script src="mask.js" defer></script>
</head>
<body>
  <main class="page" style="max-width: {max_width}">
    <form class="panel composer-form" method="post" action="/edit" enctype="multipart/form-data">
      <div class="field">
        <label for="prompt">What should change?</label>
        <textarea id="prompt" name="prompt">Swap the sky for a sunset</textarea>
      </div>
      <div class="field">
        <span class="h2">Area to change</span>
        <div class="mask-painter" data-mask-painter data-src="source.png" data-width="{width}"
             data-height="{height}">
          <input type="file" name="mask" accept="image/png" data-mask-input hidden>
          <p class="help" data-mask-status>No mask: the whole image may change.</p>
        </div>
      </div>
      <button class="button primary" type="submit">Edit image</button>
    </form>
  </main>
</body>
</html>
"""


# ------------------------------------------------------------------------------------------------
# Machinery


def make_site(folder: Path) -> Path:
    """The test page, a wide and a 320 px wide variant, the stylesheets and script, and the source image."""
    for name in ("css/app.css", "css/mask.css", "js/mask.js"):
        shutil.copy(STATIC / name, folder / Path(name).name)
    image = Image.new("RGB", (WIDTH, HEIGHT))
    draw = ImageDraw.Draw(image)
    for y in range(HEIGHT):  # a sky over a field, so the paint has something to sit on
        shade = y * 120 // HEIGHT
        draw.line(
            [(0, y), (WIDTH, y)], fill=(120 + shade, 170 + shade // 2, 230) if y < 300 else (70, 140, 70)
        )
    draw.ellipse((430, 70, 550, 190), fill=(250, 210, 90))
    draw.rectangle((90, 220, 260, 330), fill=(180, 70, 60))
    draw.polygon([(80, 225), (175, 150), (270, 225)], fill=(120, 50, 45))
    image.save(folder / "source.png")
    for name, max_width in (("index.html", "900px"), ("narrow.html", "320px")):
        (folder / name).write_text(PAGE.format(max_width=max_width, width=WIDTH, height=HEIGHT))
    return folder


class QuietHandler(SimpleHTTPRequestHandler):
    # What the form posted, newest last (the Content-Type header and the raw body), for the tests to read.
    posted: list[tuple[str, bytes]] = []

    def log_message(self, format, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        QuietHandler.posted.append((self.headers["Content-Type"], body))
        page = b'<!doctype html><title>Sent</title><link rel="icon" href="data:,"><p>Sent</p>'
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    folder = make_site(tmp_path_factory.mktemp("mask-site"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module", autouse=True)
def patient_expect():
    """Playwright's `expect` timeout is process-wide; raise it for this module only."""
    expect.set_options(timeout=TIMEOUT)
    yield
    expect.set_options(timeout=5_000)  # Playwright's default


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def open_page(browser, url, width=1280, height=900):
    context = browser.new_context(viewport={"width": width, "height": height})
    context.set_default_timeout(TIMEOUT)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.goto(url)
    page.wait_for_function(
        "() => { const img = document.querySelector('.mask-image'); return img && img.complete"
        " && img.naturalWidth > 0; }"
    )
    return context, page, errors


@pytest.fixture
def page(browser, site):
    context, page, errors = open_page(browser, site + "/index.html")
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def revision(page) -> int:
    return int(page.get_attribute("[data-mask-painter]", "data-mask-revision"))


def settle(page, before: int) -> None:
    """Waits until the painter has exported a mask (or emptied the input) after `before`."""
    page.wait_for_function(
        """before => { const root = document.querySelector('[data-mask-painter]');
             return Number(root.dataset.maskRevision) > before
               && !root.hasAttribute('data-mask-pending'); }""",
        arg=before,
    )


def stroke(page, points, steps=12) -> None:
    """Drags the mouse through `points`, given in image pixels, and waits for the exported mask."""
    box = page.locator(".mask-canvas").bounding_box()

    def screen(x, y):
        return box["x"] + x * box["width"] / WIDTH, box["y"] + y * box["height"] / HEIGHT

    before = revision(page)
    page.mouse.move(*screen(*points[0]))
    page.mouse.down()
    for point in points[1:]:
        page.mouse.move(*screen(*point), steps=steps)
    page.mouse.up()
    settle(page, before)


def click(page, name: str) -> None:
    before = revision(page)
    page.get_by_role("button", name=name).click()
    settle(page, before)


def files(page) -> list[dict]:
    return page.evaluate(
        """() => Array.from(document.querySelector('[data-mask-input]').files).map(f => ({name: f.name,
             type: f.type, size: f.size}))"""
    )


def mask(page) -> Image.Image:
    """The PNG in the hidden file input, as the form would upload it."""
    encoded = page.evaluate(
        """async () => {
             const file = document.querySelector('[data-mask-input]').files[0];
             const bytes = new Uint8Array(await file.arrayBuffer());
             let text = '';
             for (let i = 0; i < bytes.length; i += 0x8000) {
               text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
             }
             return btoa(text);
           }"""
    )
    image = Image.open(io.BytesIO(base64.b64decode(encoded)))
    assert image.format == "PNG"
    image.load()
    return image


def alpha(image: Image.Image, x: int, y: int) -> int:
    return image.getpixel((x, y))[3]


def transparent_count(image: Image.Image) -> int:
    return image.getchannel("A").histogram()[0]


def sent_mask(page) -> list:
    """The name and size of the form's "mask" part, as FormData (and so a submit) would send it."""
    return page.evaluate(
        "() => { const f = new FormData(document.forms[0]).get('mask'); return [f.name, f.size]; }"
    )


def status(page) -> str:
    return page.locator("[data-mask-status]").inner_text()


HORIZONTAL = [(100, 240), (540, 240)]


# ------------------------------------------------------------------------------------------------
# Tests


def test_a_stroke_becomes_a_transparent_area_in_an_image_sized_png(page):
    assert files(page) == []
    assert status(page) == NO_MASK
    assert page.locator(".mask-canvas").evaluate("c => [c.width, c.height]") == [WIDTH, HEIGHT]

    stroke(page, HORIZONTAL)

    assert files(page) == [{"name": "mask.png", "type": "image/png", "size": files(page)[0]["size"]}]
    image = mask(page)
    assert image.size == (WIDTH, HEIGHT)
    assert image.mode == "RGBA"
    for x in range(100, 541, 20):
        assert alpha(image, x, 240) == 0, f"({x}, 240) is on the stroke"
    for corner in ((0, 0), (WIDTH - 1, 0), (0, HEIGHT - 1), (WIDTH - 1, HEIGHT - 1), (320, 100)):
        assert image.getpixel(corner) == (0, 0, 0, 255), f"{corner} is away from the stroke"
    # Only two kinds of pixel: kept (opaque black) and edit here (alpha 0), anti-aliased edges included.
    assert {value for value, count in enumerate(image.getchannel("A").histogram()) if count} == {0, 255}
    assert image.convert("RGB").getextrema() == ((0, 0), (0, 0), (0, 0))
    # What is shown is what is sent: painted pixels on the canvas are exactly the mask's transparent ones.
    shown = page.evaluate(
        """() => { const c = document.querySelector('.mask-canvas');
             const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
             let s = ''; for (let i = 3; i < d.length; i += 4) s += d[i] ? '1' : '0'; return s; }"""
    )
    assert shown == "".join("1" if a == 0 else "0" for a in image.getchannel("A").tobytes())
    # The stroke is as wide as the brush, in image pixels.
    column = [alpha(image, 320, y) for y in range(HEIGHT)]
    assert DEFAULT_SIZE - 1 <= column.count(0) <= DEFAULT_SIZE + 3
    assert column.index(0) in range(240 - DEFAULT_SIZE // 2 - 2, 240 - DEFAULT_SIZE // 2 + 2)

    percent = round(transparent_count(image) * 100 / (WIDTH * HEIGHT))
    assert status(page) == f"Painted area: {percent} % of the image will change."
    # The form sends it.
    sent = sent_mask(page)
    assert sent == ["mask.png", files(page)[0]["size"]]


def test_eraser_removes_paint_and_undo_restores_it(page):
    stroke(page, HORIZONTAL)
    assert alpha(mask(page), 320, 240) == 0

    page.get_by_role("button", name="Eraser").click()
    expect(page.get_by_role("button", name="Eraser")).to_have_attribute("aria-pressed", "true")
    expect(page.get_by_role("button", name="Brush")).to_have_attribute("aria-pressed", "false")
    stroke(page, [(300, 240), (340, 240)])
    erased = mask(page)
    for x in (300, 320, 340):
        assert alpha(erased, x, 240) == 255, f"({x}, 240) was erased"
    for x in (150, 250, 400, 520):
        assert alpha(erased, x, 240) == 0, f"({x}, 240) was not erased"

    click(page, "Undo")
    assert alpha(mask(page), 320, 240) == 0

    # Ctrl+Z undoes the first stroke too, which leaves nothing painted and nothing to send.
    before = revision(page)
    page.keyboard.press("Control+z")
    settle(page, before)
    assert files(page) == []
    assert page.locator("[data-mask-input]").input_value() == ""
    assert status(page) == NO_MASK
    expect(page.get_by_role("button", name="Undo")).to_have_attribute("aria-disabled", "true")


def test_clear_empties_the_input_and_can_be_undone(page):
    stroke(page, HORIZONTAL)
    stroke(page, [(320, 60), (320, 420)])
    assert len(files(page)) == 1

    click(page, "Clear")
    assert files(page) == []
    assert status(page) == NO_MASK
    sent = sent_mask(page)
    assert sent == ["", 0], "an empty file part, which Django treats as no file"
    expect(page.get_by_role("button", name="Clear")).to_have_attribute("aria-disabled", "true")

    click(page, "Undo")
    restored = mask(page)
    assert alpha(restored, 320, 240) == 0
    assert alpha(restored, 320, 60) == 0
    assert alpha(restored, 100, 240) == 0


def test_brush_size_changes_the_stroke_width(page):
    slider = page.get_by_label("Brush size")
    expect(slider).to_have_value(str(DEFAULT_SIZE))
    expect(slider).to_have_attribute("min", "5")
    expect(slider).to_have_attribute("max", "200")
    stroke(page, HORIZONTAL)
    thin_image = mask(page)
    thin = transparent_count(thin_image)
    thin_column = [alpha(thin_image, 320, y) for y in range(HEIGHT)].count(0)
    click(page, "Clear")

    slider.fill("90")
    expect(page.locator(".mask-size output")).to_have_text("90 px")
    stroke(page, HORIZONTAL)
    thick_image = mask(page)
    thick = transparent_count(thick_image)
    thick_column = [alpha(thick_image, 320, y) for y in range(HEIGHT)].count(0)
    assert 88 <= thick_column <= 93
    assert thick_column > 2.5 * thin_column
    assert thick > 2.5 * thin


def test_tools_work_from_the_keyboard(page):
    canvas = page.locator(".mask-canvas")
    expect(canvas).to_have_attribute("role", "img")
    assert "mask" in canvas.get_attribute("aria-label").lower()
    expect(page.locator("[data-mask-status]")).to_have_attribute("aria-live", "polite")

    reached = []
    while "Edit image" not in reached and len(reached) < 20:
        page.keyboard.press("Tab")
        reached.append(
            page.evaluate(
                """() => { const e = document.activeElement;
                     return e.labels && e.labels.length ? e.labels[0].textContent : e.textContent.trim(); }"""
            )
        )
    assert [name for name in reached if name in ("Brush", "Eraser", "Brush size", "Undo", "Clear")] == [
        "Brush",
        "Eraser",
        "Brush size",
        "Undo",
        "Clear",
    ]

    eraser = page.get_by_role("button", name="Eraser")
    brush = page.get_by_role("button", name="Brush")
    eraser.focus()
    page.keyboard.press("Enter")
    expect(eraser).to_have_attribute("aria-pressed", "true")
    expect(brush).to_have_attribute("aria-pressed", "false")
    page.keyboard.press("Shift+Tab")
    expect(brush).to_be_focused()
    page.keyboard.press("Space")
    expect(brush).to_have_attribute("aria-pressed", "true")
    expect(eraser).to_have_attribute("aria-pressed", "false")

    # The slider moves with the arrow keys.
    slider = page.get_by_label("Brush size")
    slider.focus()
    page.keyboard.press("ArrowRight")
    expect(slider).to_have_value(str(DEFAULT_SIZE + 1))

    # Ctrl+Z in the prompt is the textarea's own undo, not the mask's.
    stroke(page, HORIZONTAL)
    page.locator("#prompt").focus()
    page.keyboard.press("Control+z")
    page.wait_for_timeout(300)
    assert len(files(page)) == 1


def test_a_narrow_display_still_exports_a_full_size_mask(browser, site):
    context, page, errors = open_page(browser, site + "/narrow.html", width=390, height=844)
    try:
        box = page.locator(".mask-canvas").bounding_box()
        assert box["width"] < 320
        assert abs(box["height"] / box["width"] - HEIGHT / WIDTH) < 0.01
        stroke(page, [(60, 400), (580, 80)])
        image = mask(page)
        assert image.size == (WIDTH, HEIGHT)
        assert alpha(image, 60, 400) == 0
        assert alpha(image, 320, 240) == 0
        assert alpha(image, 580, 80) == 0
        assert alpha(image, 600, 440) == 255
        # The brush is sized in image pixels, however small the image is shown.
        column = [alpha(image, 320, y) for y in range(HEIGHT)].count(0)
        assert DEFAULT_SIZE <= column <= DEFAULT_SIZE * 1.6  # the diagonal cuts the column at a slant
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def test_painters_swapped_in_by_htmx_are_built_once(page):
    stroke(page, HORIZONTAL)
    # A painter swapped in later, and one coming back from htmx's history cache with the built markup.
    page.evaluate(
        """() => {
             const form = document.querySelector('form');
             const old = document.querySelector('.mask-painter');
             const holder = document.createElement('div');
             holder.innerHTML = old.outerHTML
               + '<div class="mask-painter" data-mask-painter data-src="source.png" data-width="640"'
               + ' data-height="480"><input type="file" name="mask2" data-mask-input hidden>'
               + '<p class="help" data-mask-status></p></div>';
             old.remove();
             const added = Array.from(holder.children);
             added.forEach(node => form.appendChild(node));
             added.forEach(node => node.dispatchEvent(new CustomEvent('htmx:load', {bubbles: true})));
             document.body.dispatchEvent(new CustomEvent('htmx:load', {bubbles: true}));
           }"""
    )
    painters = page.locator("[data-mask-painter]")
    expect(painters).to_have_count(2)
    for index in range(2):
        painter = painters.nth(index)
        expect(painter.locator(".mask-toolbar")).to_have_count(1)
        expect(painter.locator("canvas.mask-canvas")).to_have_count(1)
        expect(painter.get_by_role("button", name="Brush")).to_have_attribute("aria-pressed", "true")
        expect(painter.get_by_label("Brush size")).to_have_value(str(DEFAULT_SIZE))
        expect(painter.locator("[data-mask-status]")).to_have_text(NO_MASK)
    ids = page.evaluate("() => Array.from(document.querySelectorAll('.mask-size input'), i => i.id)")
    assert len(set(ids)) == 2


def posted_files(content_type: str, body: bytes) -> dict[str, tuple[str, bytes]]:
    """The multipart body's file parts: field name -> (file name, bytes)."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    return {
        part.get_param("name", header="content-disposition"): (part.get_filename() or "", part.get_content())
        for part in message.iter_parts()
        if part.get_filename() is not None
    }


def test_a_mask_painted_and_submitted_at_once_is_sent(page):
    """The export runs after a pause and then asynchronously; a submit in between used to send an empty
    mask. Paint, let go and submit in the same moment: the form waits for the PNG, then goes."""
    QuietHandler.posted.clear()
    box = page.locator(".mask-canvas").bounding_box()

    def screen(x, y):
        return box["x"] + x * box["width"] / WIDTH, box["y"] + y * box["height"] / HEIGHT

    page.mouse.move(*screen(100, 240))
    page.mouse.down()
    page.mouse.move(*screen(540, 240), steps=12)
    page.mouse.up()
    # No wait for the export: submit in the same task as the stroke's end, as a quick click would.
    assert page.evaluate(
        """() => { const root = document.querySelector('[data-mask-painter]');
             const pending = root.hasAttribute('data-mask-pending');
             document.querySelector('button[type=submit]').click();
             return pending; }"""
    ), "the export should still be pending when the form is submitted"
    page.wait_for_function("() => document.title === 'Sent'")
    assert len(QuietHandler.posted) == 1, "submitted once"
    content_type, body = QuietHandler.posted[0]
    name, data = posted_files(content_type, body)["mask"]
    assert name == "mask.png"
    image = Image.open(io.BytesIO(data))
    assert (image.format, image.size) == ("PNG", (WIDTH, HEIGHT))
    for x in (100, 320, 540):
        assert alpha(image, x, 240) == 0, f"({x}, 240) is on the stroke"
    assert alpha(image, 320, 60) == 255
