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
    setOptionState(form.elements.size, model.presets.concat(model.customSizes ? ["custom"] : []), "square");
    setOptionState(form.elements.quality, model.qualities, "auto");
    var format = form.elements.output_format.value;
    var transparentOk = model.transparent && (format === "png" || format === "webp");
    setOptionState(form.elements.background, transparentOk ? ["auto", "opaque", "transparent"] : ["auto", "opaque"], "auto");
    showWhen(form.querySelectorAll("[data-show-when-size]"), form.elements.size.value === "custom");
    showWhen(form.querySelectorAll(".compression"), format === "jpeg" || format === "webp");
    var complexity = form.querySelector(".complexity");
    if (complexity) {
      complexity.hidden = !model.complexity;
      if (!model.complexity) form.elements.complexity.value = "";
    }
  }

  function countCharacters(textarea) {
    var counter = document.querySelector('[data-counter-for="' + textarea.id + '"]');
    if (counter) counter.textContent = textarea.value.length.toLocaleString();
  }

  function init(root) {
    var form = (root || document).querySelector ? (root.id === "generate-form" ? root : (root || document).querySelector("#generate-form")) : null;
    if (!form) return;
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
    if (firstError && root && root.id === "generate-form") firstError.focus();
  }

  document.addEventListener("DOMContentLoaded", function () { init(document); });
  document.addEventListener("htmx:load", function (event) { init(event.target); });
})();
