// Progressive enhancement for the generation form: the server applies the same rules on submit.
(function () {
  "use strict";

  function capabilities() {
    var node = document.getElementById("model-capabilities");
    return node ? JSON.parse(node.textContent) : null;
  }

  function setOptionState(select, allowed, fallback) {
    if (!select) return;
    Array.prototype.forEach.call(select.options, function (option) {
      option.disabled = option.value !== "" && allowed.indexOf(option.value) === -1;
    });
    if (select.selectedOptions[0] && select.selectedOptions[0].disabled) select.value = fallback;
  }

  function showWhen(elements, visible) {
    Array.prototype.forEach.call(elements, function (el) { el.hidden = !visible; });
  }

  function sync(form) {
    var caps = capabilities();
    if (!caps) return;
    var model = caps[form.elements.model.value];
    if (!model) return;
    var sizes = model.presets.concat(model.customSizes ? ["custom"] : []);
    var hasAuto = form.elements.size.querySelector('option[value="auto"]') !== null;
    if (hasAuto) sizes.push("auto");
    setOptionState(form.elements.size, sizes, hasAuto ? "auto" : "square");
    setOptionState(form.elements.quality, model.qualities, "auto");
    // GIF and SVG only where the model's row allows them (and never on an edit with a painted mask).
    setOptionState(form.elements.output_format, model.formats || ["png", "jpeg", "webp"], "png");
    var format = form.elements.output_format.value;
    showWhen(form.querySelectorAll('[data-show-when-format="gif"]'), format === "gif");
    showWhen(form.querySelectorAll('[data-show-when-format="svg"]'), format === "svg");
    if (form.elements.svg_model) setOptionState(form.elements.svg_model, model.svgAuthors || [], "");
    if (format === "svg" && form.elements.n) form.elements.n.value = "1";
    var transparentOk = model.transparent && (format === "png" || format === "webp");
    setOptionState(form.elements.background, transparentOk ? ["auto", "opaque", "transparent"] : ["auto", "opaque"], "auto");
    showWhen(form.querySelectorAll("[data-show-when-size]"), form.elements.size.value === "custom");
    showWhen(form.querySelectorAll(".compression"), format === "jpeg" || format === "webp");
    var fidelity = form.querySelector(".input-fidelity");
    if (fidelity) {
      fidelity.hidden = model.inputFidelity.length === 0;
      setOptionState(form.elements.input_fidelity, model.inputFidelity, "");
      if (fidelity.hidden) form.elements.input_fidelity.value = "";
    }
    var complexity = form.querySelector(".complexity");
    if (complexity) {
      complexity.hidden = !model.complexity;
      if (!model.complexity) form.elements.complexity.value = "";
      else setOptionState(form.elements.complexity, model.complexityLevels || [], "");
    }
    var markup = form.querySelector("[data-markup-fieldset]");
    if (markup) markup.hidden = !model.markup;
  }

  function countCharacters(textarea) {
    var counter = document.querySelector('[data-counter-for="' + textarea.id + '"]');
    if (counter) counter.textContent = textarea.value.length.toLocaleString();
  }
  // Counted fields outside the Studio's form (a template's text) keep their count as they are typed.
  document.addEventListener("input", function (event) {
    if (event.target.tagName === "TEXTAREA") countCharacters(event.target);
  });

  function init(root) {
    var scope = root || document;
    var form = scope.matches && scope.matches(".composer-form") ? scope : scope.querySelector(".composer-form");
    if (!form || form.dataset.enhanced) return;
    form.dataset.enhanced = "1";
    sync(form);
    form.addEventListener("change", function () { sync(form); });
    if (form.elements.prompt) {
      form.elements.prompt.addEventListener("input", function () { countCharacters(form.elements.prompt); });
      // Cmd/Ctrl+Enter submits from the prompt, as in chat tools.
      form.elements.prompt.addEventListener("keydown", function (event) {
        if (event.key === "Enter" && (event.metaKey || event.ctrlKey)) { event.preventDefault(); form.requestSubmit(); }
      });
    }
    var firstError = form.querySelector(".has-error input, .has-error select, .has-error textarea");
    if (firstError && root && root !== document) firstError.focus();
  }

  // The reference library: drop files anywhere on the zone; show upload progress.
  function initDropzones(root) {
    (root || document).querySelectorAll("[data-dropzone]").forEach(function (zone) {
      if (zone.dataset.enhanced) return;
      zone.dataset.enhanced = "1";
      var input = zone.querySelector('input[type="file"]');
      ["dragenter", "dragover"].forEach(function (name) {
        zone.addEventListener(name, function (event) { event.preventDefault(); zone.classList.add("dragging"); });
      });
      ["dragleave", "drop"].forEach(function (name) {
        zone.addEventListener(name, function () { zone.classList.remove("dragging"); });
      });
      zone.addEventListener("drop", function (event) {
        event.preventDefault();
        if (!event.dataTransfer || !event.dataTransfer.files.length) return;
        input.files = event.dataTransfer.files;
        zone.requestSubmit();
      });
    });
  }

  document.addEventListener("htmx:xhr:progress", function (event) {
    var progress = event.target.querySelector && event.target.querySelector("progress");
    if (!progress || !event.detail.lengthComputable) return;
    progress.hidden = false;
    progress.value = Math.round((event.detail.loaded / event.detail.total) * 100);
  });

  // Gallery selection: Shift-click selects a range; the bar counts what is selected.
  var lastChecked = null;
  document.addEventListener("click", function (event) {
    var box = event.target.closest && event.target.closest(".tile-check");
    if (!box) return;
    var boxes = Array.prototype.slice.call(document.querySelectorAll(".tile-check"));
    if (event.shiftKey && lastChecked && lastChecked !== box) {
      var from = boxes.indexOf(lastChecked), to = boxes.indexOf(box);
      boxes.slice(Math.min(from, to), Math.max(from, to) + 1).forEach(function (other) { other.checked = box.checked; });
    }
    lastChecked = box;
  });
  document.addEventListener("change", function (event) {
    if (!event.target.classList || !event.target.classList.contains("tile-check")) return;
    var count = document.querySelectorAll(".tile-check:checked").length;
    var label = document.querySelector("[data-selected-count]");
    if (label) label.textContent = count ? count + " selected" : "Select images with the boxes (Shift selects a range)";
  });

  // Image page: arrow keys move through the gallery view; zoom to 100 %; copy the prompt.
  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || event.altKey || event.ctrlKey || event.metaKey) return;
    var tag = (event.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "textarea" || tag === "select" || event.target.isContentEditable) return;
    var rel = event.key === "ArrowLeft" ? "prev" : event.key === "ArrowRight" ? "next" : null;
    var link = rel && document.querySelector('a[rel="' + rel + '"]');
    if (link) { event.preventDefault(); window.location.href = link.href; }
  });
  document.addEventListener("click", function (event) {
    var zoom = event.target.closest && event.target.closest("[data-zoom-toggle]");
    if (zoom) {
      var stage = document.querySelector("[data-zoom-stage]");
      var on = stage.classList.toggle("zoomed");
      zoom.setAttribute("aria-pressed", on ? "true" : "false");
      zoom.textContent = on ? "Fit to screen" : "Zoom to 100 %";
      return;
    }
    var copy = event.target.closest && event.target.closest("[data-copy]");
    if (copy && navigator.clipboard) {
      var source = document.querySelector(copy.getAttribute("data-copy"));
      navigator.clipboard.writeText(source.innerText).then(function () {
        copy.textContent = "Copied";
        setTimeout(function () { copy.textContent = "Copy prompt"; }, 1500);
      });
    }
  });

  // Sizes that depend on the data, set through the CSSOM: style attributes are refused by the page's
  // Content-Security-Policy. The comparison's columns share one scale: each is as wide as its image.
  function applyLayout(root) {
    var scope = root || document;
    var grids = Array.prototype.slice.call(scope.querySelectorAll("[data-grid-columns]"));
    if (scope.matches && scope.matches("[data-grid-columns]")) grids.push(scope);
    grids.forEach(function (grid) { grid.style.gridTemplateColumns = grid.dataset.gridColumns; });
  }

  // The gallery filters ask for results on any change but the search box's, which asks as you type:
  // a named event rather than an htmx trigger filter, which htmx would have to eval.
  document.addEventListener("change", function (event) {
    var form = event.target.form;
    if (form && form.id === "gallery-filters" && event.target.id !== "id_q") {
      form.dispatchEvent(new CustomEvent("filters-changed", { bubbles: true }));
    }
  });

  document.addEventListener("DOMContentLoaded", function () { applyLayout(document); });
  document.addEventListener("htmx:load", function (event) { applyLayout(event.target); });
  document.addEventListener("DOMContentLoaded", function () { initDropzones(document); });
  document.addEventListener("htmx:load", function (event) { initDropzones(event.target); });
  document.addEventListener("DOMContentLoaded", function () { init(document); });
  document.addEventListener("htmx:load", function (event) { init(event.target); });
})();
