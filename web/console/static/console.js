// 清朗 staff console: small progressive enhancements; every page works without this file.
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    // "select all" in the queue ticks every row of the bulk-transfer form
    document.querySelectorAll("input.select-all").forEach(function (all) {
      all.addEventListener("change", function () {
        document.querySelectorAll('input[type=checkbox][name=case]').forEach(function (box) {
          box.checked = all.checked;
        });
      });
    });
    // forms that end something ask once more
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) {
          event.preventDefault();
        }
      });
    });
    // a form is sent once: the button is disabled after the first click
    document.querySelectorAll("form[method=post]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (event.defaultPrevented) { return; }
        form.querySelectorAll("button[type=submit]").forEach(function (button) { button.disabled = true; });
      });
    });
  });
})();
