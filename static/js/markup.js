// Markup for markup-guided edits: draw circles, arrows and short labels over the first input; the form
// gets a transparent PNG exactly the input's size (data-width x data-height) with the drawing on it, sent
// to the API as `markup`. The server checks the size, refuses it with a mask, and on models without it.
//
// Markup (rendered by the edit form; this script builds the toolbar and canvas inside it):
//   <div class="markup-painter" data-markup-painter data-src="…" data-width="1024" data-height="1536">
//     <input type="file" name="markup" accept="image/png" data-markup-input hidden>
//     <p class="help" data-markup-status>…</p>
//   </div>
// After every export the root's data-markup-revision goes up by one; data-markup-pending is present
// while a drawing is being turned into a PNG, and a submit meanwhile waits for it.
(function () {
  "use strict";

  // Colours that read on most photographs; "auto" picks the one farthest from the image's average.
  var COLOURS = { red: [235, 20, 60], yellow: [255, 214, 0], cyan: [0, 220, 255], magenta: [255, 0, 200], white: [255, 255, 255], black: [0, 0, 0] };
  var MAX_LABEL = 40;
  var counter = 0;

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) { node.setAttribute(name, attrs[name]); });
    if (text) node.textContent = text;
    return node;
  }

  function positiveInt(value) {
    var number = parseInt(value, 10);
    return number > 0 ? number : 0;
  }

  function Markup(root) {
    this.root = root;
    this.input = root.querySelector("[data-markup-input]");
    this.status = root.querySelector("[data-markup-status]");
    this.width = positiveInt(root.getAttribute("data-width"));
    this.height = positiveInt(root.getAttribute("data-height"));
    this.shapes = [];
    this.tool = "circle";
    this.drag = null;
    this.revision = 0;
    this.exportId = 0;
    this.autoColour = "red";
    this.build();
    this.image.src = root.getAttribute("data-src") || "";
  }

  Markup.prototype.build = function () {
    var self = this;
    var root = this.root;
    var id = "markup-" + (++counter);
    Array.prototype.forEach.call(root.querySelectorAll(":scope > .markup-toolbar, :scope > .mask-frame"), function (old) {
      root.removeChild(old);
    });
    var toolbar = el("div", { "class": "markup-toolbar mask-toolbar", role: "group", "aria-label": "Markup tools" });
    var tools = el("div", { "class": "mask-tools" });
    this.buttons = {};
    [["circle", "Circle"], ["arrow", "Arrow"], ["label", "Label"]].forEach(function (pair) {
      var button = el("button", { type: "button", "class": "button small markup-" + pair[0], "aria-pressed": "false" }, pair[1]);
      button.addEventListener("click", function () { self.setTool(pair[0]); });
      self.buttons[pair[0]] = button;
      tools.appendChild(button);
    });
    var textField = el("div", { "class": "markup-text" });
    textField.appendChild(el("label", { "for": id + "-text" }, "Label text"));
    this.textInput = el("input", { type: "text", id: id + "-text", maxlength: String(MAX_LABEL), placeholder: "e.g. make this red" });
    textField.appendChild(this.textInput);
    var colourField = el("div", { "class": "markup-colour" });
    colourField.appendChild(el("label", { "for": id + "-colour" }, "Colour"));
    this.colourSelect = el("select", { id: id + "-colour" });
    this.colourSelect.appendChild(el("option", { value: "auto" }, "Contrasting"));
    Object.keys(COLOURS).forEach(function (name) {
      self.colourSelect.appendChild(el("option", { value: name }, name.charAt(0).toUpperCase() + name.slice(1)));
    });
    colourField.appendChild(this.colourSelect);
    var history = el("div", { "class": "mask-tools" });
    this.undoButton = el("button", { type: "button", "class": "button small markup-undo" }, "Undo");
    this.clearButton = el("button", { type: "button", "class": "button small markup-clear" }, "Clear");
    this.undoButton.addEventListener("click", function () { self.shapes.pop(); self.changed(); });
    this.clearButton.addEventListener("click", function () { self.shapes = []; self.changed(); });
    history.appendChild(this.undoButton);
    history.appendChild(this.clearButton);
    toolbar.appendChild(tools);
    toolbar.appendChild(textField);
    toolbar.appendChild(colourField);
    toolbar.appendChild(history);

    var frame = el("div", { "class": "mask-frame" });
    this.stage = el("div", { "class": "mask-stage" });
    this.image = el("img", { "class": "mask-image", alt: "", draggable: "false" });
    this.canvas = el("canvas", {
      "class": "markup-canvas",
      role: "img",
      "aria-label": "The first image with your markup drawn over it: circles, arrows and labels guide the edit."
    });
    if (this.status) {
      if (!this.status.id) this.status.id = id + "-status";
      this.canvas.setAttribute("aria-describedby", this.status.id);
    }
    this.stage.appendChild(this.image);
    this.stage.appendChild(this.canvas);
    frame.appendChild(this.stage);
    root.insertBefore(frame, root.firstChild);
    root.insertBefore(toolbar, frame);
    root.setAttribute("data-markup-revision", "0");

    if (this.width && this.height) {
      this.canvas.width = this.width;
      this.canvas.height = this.height;
      this.stage.style.setProperty("--mask-w", this.width);
      this.stage.style.setProperty("--mask-h", this.height);
    }
    this.image.addEventListener("load", function () { self.pickContrast(); });
    this.canvas.addEventListener("pointerdown", function (event) { self.down(event); });
    this.canvas.addEventListener("pointermove", function (event) { self.move(event); });
    this.canvas.addEventListener("pointerup", function (event) { self.up(event); });
    this.canvas.addEventListener("pointercancel", function () { self.drag = null; self.draw(); });
    this.colourSelect.addEventListener("change", function () { self.changed(); });
    this.setTool("circle");

    var form = root.closest("form");
    if (form) {
      // A shape drawn and submitted at once would be lost while toBlob runs: hold the submit until then.
      form.addEventListener("submit", function (event) {
        if (!root.hasAttribute("data-markup-pending")) return;
        event.preventDefault();
        self.submitAfterExport = { submitter: event.submitter || null, form: form };
      });
    }
  };

  Markup.prototype.setTool = function (tool) {
    this.tool = tool;
    var buttons = this.buttons;
    Object.keys(buttons).forEach(function (name) { buttons[name].setAttribute("aria-pressed", String(name === tool)); });
  };

  Markup.prototype.colour = function () {
    var name = this.colourSelect.value === "auto" ? this.autoColour : this.colourSelect.value;
    var rgb = COLOURS[name] || COLOURS.red;
    return "rgb(" + rgb.join(",") + ")";
  };

  // The colour farthest from the image's average colour, so the marks stand out from what is under them.
  Markup.prototype.pickContrast = function () {
    try {
      var probe = document.createElement("canvas");
      probe.width = probe.height = 16;
      var context = probe.getContext("2d");
      context.drawImage(this.image, 0, 0, 16, 16);
      var data = context.getImageData(0, 0, 16, 16).data;
      var mean = [0, 0, 0];
      for (var i = 0; i < data.length; i += 4) { mean[0] += data[i]; mean[1] += data[i + 1]; mean[2] += data[i + 2]; }
      mean = mean.map(function (sum) { return sum / (data.length / 4); });
      var best = "red", bestDistance = -1;
      ["red", "yellow", "cyan", "magenta"].forEach(function (name) {
        var rgb = COLOURS[name];
        var distance = Math.pow(rgb[0] - mean[0], 2) + Math.pow(rgb[1] - mean[1], 2) + Math.pow(rgb[2] - mean[2], 2);
        if (distance > bestDistance) { best = name; bestDistance = distance; }
      });
      this.autoColour = best;
    } catch (error) {
      this.autoColour = "red"; // an image the canvas may not read: red reads on most photographs
    }
  };

  Markup.prototype.point = function (event) {
    var box = this.canvas.getBoundingClientRect();
    return {
      x: Math.round((event.clientX - box.left) * this.canvas.width / box.width),
      y: Math.round((event.clientY - box.top) * this.canvas.height / box.height)
    };
  };

  Markup.prototype.down = function (event) {
    if (event.button !== undefined && event.button !== 0) return;
    var at = this.point(event);
    if (this.tool === "label") {
      var text = this.textInput.value.trim().slice(0, MAX_LABEL);
      if (!text) {
        this.say("Type the label's text first, then click where it goes.");
        this.textInput.focus();
        return;
      }
      this.shapes.push({ kind: "label", x: at.x, y: at.y, text: text, colour: this.colour() });
      this.changed();
      return;
    }
    this.canvas.setPointerCapture(event.pointerId);
    this.drag = { kind: this.tool, x: at.x, y: at.y, x2: at.x, y2: at.y, colour: this.colour() };
  };

  Markup.prototype.move = function (event) {
    if (!this.drag) return;
    var at = this.point(event);
    this.drag.x2 = at.x;
    this.drag.y2 = at.y;
    this.draw();
  };

  Markup.prototype.up = function () {
    if (!this.drag) return;
    var shape = this.drag;
    this.drag = null;
    if (Math.abs(shape.x2 - shape.x) + Math.abs(shape.y2 - shape.y) > 4) this.shapes.push(shape);
    this.changed();
  };

  Markup.prototype.lineWidth = function () {
    return Math.max(4, Math.round(Math.min(this.canvas.width, this.canvas.height) / 150));
  };

  Markup.prototype.drawShape = function (context, shape) {
    var width = this.lineWidth();
    context.strokeStyle = context.fillStyle = shape.colour;
    context.lineWidth = width;
    context.lineCap = context.lineJoin = "round";
    if (shape.kind === "circle") {
      var radius = Math.hypot(shape.x2 - shape.x, shape.y2 - shape.y);
      context.beginPath();
      context.arc(shape.x, shape.y, radius, 0, 2 * Math.PI);
      context.stroke();
    } else if (shape.kind === "arrow") {
      var angle = Math.atan2(shape.y2 - shape.y, shape.x2 - shape.x);
      var head = width * 4;
      context.beginPath();
      context.moveTo(shape.x, shape.y);
      context.lineTo(shape.x2, shape.y2);
      context.stroke();
      context.beginPath();
      context.moveTo(shape.x2, shape.y2);
      context.lineTo(shape.x2 - head * Math.cos(angle - 0.45), shape.y2 - head * Math.sin(angle - 0.45));
      context.lineTo(shape.x2 - head * Math.cos(angle + 0.45), shape.y2 - head * Math.sin(angle + 0.45));
      context.closePath();
      context.fill();
    } else {
      var size = Math.max(18, Math.round(Math.min(this.canvas.width, this.canvas.height) / 28));
      context.font = "600 " + size + "px system-ui, sans-serif";
      context.textBaseline = "middle";
      context.lineWidth = Math.max(3, Math.round(size / 6));
      context.strokeStyle = shape.colour === "rgb(0,0,0)" ? "rgb(255,255,255)" : "rgb(0,0,0)";
      context.strokeText(shape.text, shape.x, shape.y); // an outline, so the label reads on any background
      context.fillText(shape.text, shape.x, shape.y);
    }
  };

  Markup.prototype.draw = function () {
    var context = this.canvas.getContext("2d");
    context.clearRect(0, 0, this.canvas.width, this.canvas.height);
    var self = this;
    this.shapes.forEach(function (shape) { self.drawShape(context, shape); });
    if (this.drag) this.drawShape(context, this.drag);
  };

  Markup.prototype.say = function (text) {
    if (this.status) this.status.textContent = text;
  };

  Markup.prototype.changed = function () {
    var self = this;
    this.draw();
    var count = this.shapes.length;
    this.say(count ? count + " mark" + (count === 1 ? "" : "s") + " drawn; they go with the edit as its markup." : "No markup.");
    var id = ++this.exportId;
    if (!count) { this.setFile(null); return; }
    this.root.setAttribute("data-markup-pending", "");
    this.canvas.toBlob(function (blob) {
      if (id !== self.exportId) return;
      self.setFile(blob ? new File([blob], "markup.png", { type: "image/png" }) : null);
    }, "image/png");
  };

  Markup.prototype.setFile = function (file) {
    if (this.input) {
      var transfer = new DataTransfer();
      if (file) transfer.items.add(file);
      else this.input.value = "";
      this.input.files = transfer.files;
      this.input.dispatchEvent(new Event("change", { bubbles: true }));
    }
    this.root.removeAttribute("data-markup-pending");
    this.root.setAttribute("data-markup-revision", String(++this.revision));
    var pending = this.submitAfterExport;
    this.submitAfterExport = null;
    if (pending) pending.form.requestSubmit(pending.submitter || undefined);
  };

  function init(scope) {
    (scope || document).querySelectorAll("[data-markup-painter]").forEach(function (root) {
      if (root.markup) return;
      root.markup = new Markup(root);
    });
  }

  document.addEventListener("DOMContentLoaded", function () { init(document); });
  document.addEventListener("htmx:load", function (event) { init(event.target); });
})();
