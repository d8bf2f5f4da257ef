// Mask painter for masked edits: paint over the image where it may change; the form gets a PNG mask
// the size of the image (data-width x data-height), transparent where painted and opaque black elsewhere.
//
// Markup (rendered by the edit form; this script builds the toolbar and canvases inside it):
//   <div class="mask-painter" data-mask-painter data-src="…" data-width="1024" data-height="1536">
//     <input type="file" name="mask" accept="image/png" data-mask-input hidden>
//     <p class="help" data-mask-status>…</p>
//   </div>
// After every export the root's data-mask-revision goes up by one and the input fires "change";
// data-mask-pending is present while a stroke is waiting to be turned into a mask; a submit meanwhile
// waits for it and then goes ahead.
(function () {
  "use strict";

  var PAINT = [91, 76, 240]; // --accent; the paint canvas is shown at 45 % opacity by mask.css
  var MIN_SIZE = 5;
  var MAX_SIZE = 200;
  var MAX_UNDO = 30;
  var UNDO_BUDGET_BYTES = 200 * 1024 * 1024; // 30 snapshots of a 4K image would be 1 GB
  var EXPORT_DELAY_MS = 120;
  var NO_MASK = "No mask: the whole image may change.";
  var ICONS = {
    brush: '<path d="M4 20c3 0 5-1.5 5-4a2.5 2.5 0 0 0-5 0c0 1.5-.5 3-2 4h2z"/><path d="M9.5 13.5 20 3l1 1-10.5 10.5"/>',
    eraser: '<path d="m7 21-4-4 11-11 7 7-8 8H7z"/><path d="M21 21H11"/><path d="m9 9 7 7"/>',
    undo: '<path d="M9 14 4 9l5-5"/><path d="M4 9h11a5 5 0 0 1 0 10h-3"/>',
    clear: '<path d="M4 7h16"/><path d="M10 11v6M14 11v6"/><path d="M6 7l1 13h10l1-13"/><path d="M9 7V4h6v3"/>'
  };
  var counter = 0;
  var lastUsed = null; // the painter Ctrl/Cmd+Z undoes when focus is not inside any painter

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) { node.setAttribute(name, attrs[name]); });
    if (text) node.textContent = text;
    return node;
  }

  function toolButton(label, icon, extraClass) {
    var button = el("button", { type: "button", "class": "button small " + extraClass });
    button.innerHTML = '<svg aria-hidden="true" width="16" height="16" viewBox="0 0 24 24" fill="none" ' +
      'stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round">' + ICONS[icon] + "</svg>";
    button.appendChild(el("span", {}, label));
    return button;
  }

  function positiveInt(value) {
    var number = parseInt(value, 10);
    return number > 0 ? number : 0;
  }

  function isTextEntry(node) {
    if (!node || !node.tagName) return false;
    if (node.isContentEditable || node.tagName === "TEXTAREA" || node.tagName === "SELECT") return true;
    return node.tagName === "INPUT" && !/^(button|submit|reset|checkbox|radio|range|file|image|color)$/i.test(node.type);
  }

  function Painter(root) {
    this.root = root;
    this.input = root.querySelector("[data-mask-input]");
    this.status = root.querySelector("[data-mask-status]");
    this.tool = "brush";
    this.undoStack = [];
    this.stroke = null; // {id, x, y, erase} while a pointer is down
    this.committed = null; // the layer's pixels as of the last export, if nothing has changed since
    this.timer = null;
    this.exportId = 0;
    this.revision = 0;
    this.painted = 0;
    this.build();
    var width = positiveInt(root.getAttribute("data-width"));
    var height = positiveInt(root.getAttribute("data-height"));
    if (width && height) this.setSize(width, height);
    this.image.src = root.getAttribute("data-src") || "";
  }

  Painter.prototype.build = function () {
    var self = this;
    var root = this.root;
    var id = "mask-painter-" + (++counter);
    // htmx's history cache stores the built markup; a restored page brings back copies without the script.
    Array.prototype.forEach.call(root.querySelectorAll(":scope > .mask-toolbar, :scope > .mask-frame"), function (old) {
      root.removeChild(old);
    });

    var toolbar = el("div", { "class": "mask-toolbar", role: "group", "aria-label": "Mask tools" });
    var tools = el("div", { "class": "mask-tools" });
    this.brushButton = toolButton("Brush", "brush", "mask-brush");
    this.eraserButton = toolButton("Eraser", "eraser", "mask-eraser");
    tools.appendChild(this.brushButton);
    tools.appendChild(this.eraserButton);

    var sizeField = el("div", { "class": "mask-size" });
    var sizeLabel = el("label", { "for": id + "-size" }, "Brush size");
    this.sizeInput = el("input", { type: "range", id: id + "-size", min: MIN_SIZE, max: MAX_SIZE, step: "1" });
    this.sizeOutput = el("output", { "for": id + "-size", "aria-hidden": "true" });
    sizeField.appendChild(sizeLabel);
    sizeField.appendChild(this.sizeInput);
    sizeField.appendChild(this.sizeOutput);

    var history = el("div", { "class": "mask-tools" });
    this.undoButton = toolButton("Undo", "undo", "mask-undo");
    this.undoButton.setAttribute("aria-keyshortcuts", "Control+Z Meta+Z");
    this.undoButton.title = "Undo (Ctrl+Z / \u2318Z)";
    this.clearButton = toolButton("Clear", "clear", "mask-clear");
    history.appendChild(this.undoButton);
    history.appendChild(this.clearButton);

    toolbar.appendChild(tools);
    toolbar.appendChild(sizeField);
    toolbar.appendChild(history);

    var frame = el("div", { "class": "mask-frame" });
    this.stage = el("div", { "class": "mask-stage" });
    this.image = el("img", { "class": "mask-image", alt: "", draggable: "false" });
    this.canvas = el("canvas", {
      "class": "mask-canvas",
      role: "img",
      "aria-label": "Image to edit with the mask painted over it. Painted areas will be changed; the rest is kept."
    });
    if (this.status) {
      if (!this.status.id) this.status.id = id + "-status";
      this.status.setAttribute("aria-live", "polite");
      this.canvas.setAttribute("aria-describedby", this.status.id);
    }
    this.cursor = el("div", { "class": "mask-cursor", "aria-hidden": "true", hidden: "" });
    this.stage.appendChild(this.image);
    this.stage.appendChild(this.canvas);
    this.stage.appendChild(this.cursor);
    frame.appendChild(this.stage);

    root.insertBefore(frame, root.firstChild);
    root.insertBefore(toolbar, frame);
    root.setAttribute("data-mask-revision", "0");

    this.brushButton.addEventListener("click", function () { self.setTool("brush"); });
    this.eraserButton.addEventListener("click", function () { self.setTool("eraser"); });
    this.undoButton.addEventListener("click", function () { self.undo(); });
    this.clearButton.addEventListener("click", function () { self.clear(); });
    this.sizeInput.addEventListener("input", function () { self.showSize(true); });

    this.canvas.addEventListener("pointerdown", function (event) { self.down(event); });
    this.canvas.addEventListener("pointermove", function (event) { self.move(event); });
    this.canvas.addEventListener("pointerup", function (event) { self.up(event); });
    this.canvas.addEventListener("pointercancel", function (event) { self.up(event); });
    this.canvas.addEventListener("pointerleave", function () {
      self.hovering = false;
      if (!self.stroke) self.cursor.hidden = true;
    });
    this.canvas.addEventListener("contextmenu", function (event) { event.preventDefault(); });

    this.image.addEventListener("load", function () {
      var w = self.image.naturalWidth, h = self.image.naturalHeight;
      if (!self.width) {
        self.setSize(w, h);
      } else if (w !== self.width || h !== self.height) {
        console.warn("mask.js: image is " + w + "x" + h + " but data-width/height say " + self.width + "x" + self.height);
      }
    });
    this.image.addEventListener("error", function () {
      self.root.classList.add("mask-broken");
      self.say("The image could not be loaded; reload the page to paint a mask.");
    });

    var form = root.closest("form");
    if (form) {
      // A mask painted and submitted at once would be lost: the export (a timer, then an async toBlob)
      // has not put the PNG in the file input yet. Hold the submit, export now, and submit again when
      // the file is in place (setFile), through the same button so its name and value are sent too.
      form.addEventListener("submit", function (event) {
        if (!self.root.hasAttribute("data-mask-pending")) return;
        event.preventDefault();
        self.submitAfterExport = { submitter: event.submitter || null };
        self.say("Preparing the mask…");
        if (self.timer) {
          clearTimeout(self.timer);
          self.exportMask();
        }
      });
      form.addEventListener("reset", function () {
        setTimeout(function () {
          if (!self.ctx) return;
          self.undoStack = [];
          self.ctx.clearRect(0, 0, self.width, self.height);
          self.exportSoon(0);
        }, 0);
      });
    }
    this.setTool("brush");
    this.updateButtons();
  };

  Painter.prototype.setSize = function (width, height) {
    this.width = width;
    this.height = height;
    this.canvas.width = width;
    this.canvas.height = height;
    this.stage.style.setProperty("--mask-w", width);
    this.stage.style.setProperty("--mask-h", height);
    this.ctx = this.canvas.getContext("2d", { willReadFrequently: true });
    this.maskCanvas = document.createElement("canvas");
    this.maskCanvas.width = width;
    this.maskCanvas.height = height;
    var bytes = width * height * 4;
    this.undoLimit = Math.max(3, Math.min(MAX_UNDO, Math.floor(UNDO_BUDGET_BYTES / bytes)));
    var size = Math.round(Math.min(width, height) * 0.06);
    this.sizeInput.value = String(Math.max(MIN_SIZE, Math.min(MAX_SIZE, size)));
    this.showSize(false);
    this.exportSoon(0);
  };

  Painter.prototype.brushSize = function () {
    return parseInt(this.sizeInput.value, 10) || MIN_SIZE;
  };

  Painter.prototype.showSize = function (preview) {
    var self = this;
    var size = this.brushSize();
    this.sizeOutput.textContent = size + " px";
    this.sizeInput.setAttribute("aria-valuetext", size + " pixels");
    if (!preview || !this.width) return;
    // Show the new size in the middle of the image while the slider moves.
    var rect = this.canvas.getBoundingClientRect();
    this.placeCursor(rect.width / 2, rect.height / 2, rect);
    clearTimeout(this.previewTimer);
    this.previewTimer = setTimeout(function () { if (!self.stroke && !self.hovering) self.cursor.hidden = true; }, 900);
  };

  Painter.prototype.setTool = function (tool) {
    this.tool = tool;
    this.brushButton.setAttribute("aria-pressed", String(tool === "brush"));
    this.eraserButton.setAttribute("aria-pressed", String(tool === "eraser"));
    this.root.classList.toggle("mask-erasing", tool === "eraser");
  };

  Painter.prototype.updateButtons = function () {
    this.undoButton.setAttribute("aria-disabled", String(!this.undoStack.length));
    this.clearButton.setAttribute("aria-disabled", String(!this.painted && !this.stroke));
  };

  Painter.prototype.say = function (text) {
    if (this.status && this.status.textContent !== text) this.status.textContent = text;
  };

  // Pointer position in image pixels.
  Painter.prototype.point = function (event, rect) {
    rect = rect || this.canvas.getBoundingClientRect();
    return {
      x: (event.clientX - rect.left) * this.width / rect.width,
      y: (event.clientY - rect.top) * this.height / rect.height
    };
  };

  Painter.prototype.placeCursor = function (left, top, rect) {
    var diameter = this.brushSize() * rect.width / this.width;
    var style = this.cursor.style;
    style.width = style.height = diameter + "px";
    style.transform = "translate(" + (left - diameter / 2) + "px," + (top - diameter / 2) + "px)";
    this.cursor.hidden = false;
  };

  Painter.prototype.down = function (event) {
    if (!this.ctx || this.stroke) return;
    if (event.pointerType === "mouse" && event.button !== 0) return;
    var erase = this.tool === "eraser" || event.button === 5; // 5: the eraser end of a pen
    event.preventDefault();
    lastUsed = this;
    try { this.canvas.setPointerCapture(event.pointerId); } catch (ignore) { /* synthetic events */ }
    this.pushUndo();
    var p = this.point(event);
    this.stroke = { id: event.pointerId, x: p.x, y: p.y, erase: erase };
    var ctx = this.ctx;
    ctx.save();
    ctx.globalCompositeOperation = erase ? "destination-out" : "source-over";
    ctx.fillStyle = ctx.strokeStyle = "rgb(" + PAINT.join(",") + ")";
    ctx.lineWidth = this.brushSize();
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.beginPath();
    ctx.arc(p.x, p.y, ctx.lineWidth / 2, 0, Math.PI * 2);
    ctx.fill();
    this.root.setAttribute("data-mask-pending", "");
    this.updateButtons();
    this.hover(event);
  };

  Painter.prototype.move = function (event) {
    this.hover(event);
    var stroke = this.stroke;
    if (!stroke || event.pointerId !== stroke.id) return;
    var events = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
    if (!events.length) events = [event];
    var rect = this.canvas.getBoundingClientRect();
    var ctx = this.ctx;
    ctx.beginPath();
    ctx.moveTo(stroke.x, stroke.y);
    for (var i = 0; i < events.length; i++) {
      var p = this.point(events[i], rect);
      ctx.lineTo(p.x, p.y);
      stroke.x = p.x;
      stroke.y = p.y;
    }
    ctx.stroke();
  };

  Painter.prototype.hover = function (event) {
    if (event.pointerType === "touch") { this.cursor.hidden = true; return; }
    this.hovering = true;
    var rect = this.canvas.getBoundingClientRect();
    this.placeCursor(event.clientX - rect.left, event.clientY - rect.top, rect);
  };

  Painter.prototype.up = function (event) {
    if (event.type === "pointercancel" || event.pointerType === "touch") this.cursor.hidden = true;
    var stroke = this.stroke;
    if (!stroke || event.pointerId !== stroke.id) return;
    if (event.type === "pointerup") this.move(event);
    this.ctx.restore();
    this.stroke = null;
    this.exportSoon(EXPORT_DELAY_MS);
  };

  Painter.prototype.pushUndo = function () {
    // The last export already read the layer as it is now, unless something changed since.
    this.undoStack.push(this.committed || this.ctx.getImageData(0, 0, this.width, this.height));
    this.committed = null;
    while (this.undoStack.length > this.undoLimit) this.undoStack.shift();
  };

  Painter.prototype.undo = function () {
    if (!this.ctx || this.stroke || !this.undoStack.length) return;
    lastUsed = this;
    this.ctx.putImageData(this.undoStack.pop(), 0, 0);
    this.exportSoon(0);
  };

  Painter.prototype.clear = function () {
    if (!this.ctx || this.stroke || !this.painted) return;
    lastUsed = this;
    this.pushUndo(); // Clear can be undone too
    this.ctx.clearRect(0, 0, this.width, this.height);
    this.exportSoon(0);
  };

  Painter.prototype.exportSoon = function (delay) {
    var self = this;
    this.committed = null;
    this.root.setAttribute("data-mask-pending", "");
    this.updateButtons();
    clearTimeout(this.timer);
    this.timer = setTimeout(function () { self.exportMask(); }, delay);
  };

  // Any pixel with paint on it, anti-aliased edges included, is "edit here": alpha 0 in the mask.
  // The same pass makes those pixels solid on the paint layer, so what is shown is exactly what is sent.
  Painter.prototype.exportMask = function () {
    var self = this;
    this.timer = null;
    if (this.stroke) return; // the stroke's end exports
    var layer = this.ctx.getImageData(0, 0, this.width, this.height);
    var paint = layer.data;
    var maskCtx = this.maskCanvas.getContext("2d");
    var mask = maskCtx.createImageData(this.width, this.height);
    var out = mask.data; // starts as transparent black
    var painted = 0;
    var touched = false;
    for (var i = 3, n = paint.length; i < n; i += 4) {
      var alpha = paint[i];
      if (alpha === 0) {
        out[i] = 255;
      } else {
        painted++;
        if (alpha !== 255) {
          paint[i - 3] = PAINT[0]; paint[i - 2] = PAINT[1]; paint[i - 1] = PAINT[2]; paint[i] = 255;
          touched = true;
        }
      }
    }
    if (touched) this.ctx.putImageData(layer, 0, 0);
    this.committed = layer; // the undo snapshot for the next stroke, saving a read at pointerdown
    this.painted = painted;
    var id = ++this.exportId;
    if (!painted) {
      this.setFile(null);
      this.say(NO_MASK);
      return;
    }
    maskCtx.putImageData(mask, 0, 0);
    var percent = painted * 100 / (this.width * this.height);
    this.maskCanvas.toBlob(function (blob) {
      if (id !== self.exportId) return; // a newer export is on its way
      if (!blob) {
        self.setFile(null);
        self.say("The mask could not be made in this browser; the whole image may change.");
        return;
      }
      self.setFile(new File([blob], "mask.png", { type: "image/png" }));
      self.say("Painted area: " + (percent < 1 ? "under 1" : Math.round(percent)) + " % of the image will change.");
    }, "image/png");
  };

  Painter.prototype.setFile = function (file) {
    if (this.input) {
      var changed = Boolean(file) || this.input.files.length > 0;
      var transfer = new DataTransfer();
      if (file) transfer.items.add(file);
      else this.input.value = "";
      this.input.files = transfer.files;
      if (changed) this.input.dispatchEvent(new Event("change", { bubbles: true }));
    }
    this.root.setAttribute("data-mask-revision", String(++this.revision));
    this.root.removeAttribute("data-mask-pending");
    this.updateButtons();
    var waiting = this.submitAfterExport;
    var form = this.root.closest("form");
    if (waiting && form) {
      this.submitAfterExport = null;
      var submitter = waiting.submitter && waiting.submitter.form === form ? waiting.submitter : undefined;
      form.requestSubmit(submitter);
    }
  };

  function init(scope) {
    if (!scope || !scope.querySelectorAll) return;
    var roots = Array.prototype.slice.call(scope.querySelectorAll("[data-mask-painter]"));
    if (scope.matches && scope.matches("[data-mask-painter]")) roots.unshift(scope);
    roots.forEach(function (root) {
      if (root.maskPainter) return;
      root.maskPainter = new Painter(root);
    });
  }

  document.addEventListener("keydown", function (event) {
    if (!(event.ctrlKey || event.metaKey) || event.shiftKey || event.altKey) return;
    if (event.key !== "z" && event.key !== "Z" && event.code !== "KeyZ") return;
    var inside = event.target && event.target.closest ? event.target.closest("[data-mask-painter]") : null;
    var painter = inside ? inside.maskPainter : null;
    if (!painter) {
      if (isTextEntry(event.target) || !lastUsed || !document.contains(lastUsed.root)) return;
      painter = lastUsed;
    }
    if (!painter || !painter.undoStack.length) return;
    event.preventDefault();
    painter.undo();
  });
  document.addEventListener("DOMContentLoaded", function () { init(document); });
  document.addEventListener("htmx:load", function (event) { init(event.target); });
  if (document.readyState !== "loading") init(document);
})();
