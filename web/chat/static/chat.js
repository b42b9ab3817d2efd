// Progressive enhancement of the chat's plain HTML forms: send them with fetch and swap in the
// conversation the server renders (the same escaped HTML a normal post leads to). Without this file
// every form still works as a normal post.
(function () {
  "use strict";
  var HEADER = "qinglang-chat";

  function chat() { return document.getElementById("chat"); }

  function showError(text) {
    var box = document.getElementById("chat-error");
    if (!box) { return; }
    box.textContent = text;
    box.hidden = false;
  }

  function settle() {
    var latest = document.getElementById("latest");
    if (latest && latest.scrollIntoView) { latest.scrollIntoView({ block: "end" }); }
    var text = document.getElementById("chat-text");
    if (text) { text.focus(); }
  }

  function swap(html) {
    var holder = document.createElement("template");
    holder.innerHTML = html; // rendered by the server with autoescaping
    var fresh = holder.content.querySelector("#chat");
    var old = chat();
    if (fresh && old) { old.replaceWith(fresh); settle(); } else { window.location.assign("/chat"); }
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.closest("#chat") || !window.fetch) { return; }
    event.preventDefault();
    if (form.getAttribute("aria-busy") === "true") { return; } // a double click sends once
    var data = new FormData(form);
    var submitter = event.submitter;
    if (submitter && submitter.name) { data.append(submitter.name, submitter.value); }
    var multipart = form.enctype === "multipart/form-data";
    form.setAttribute("aria-busy", "true");
    fetch(form.action, {
      method: "POST",
      body: multipart ? data : new URLSearchParams(data),
      headers: { "X-Requested-With": HEADER },
      credentials: "same-origin"
    }).then(function (response) {
      return response.text().then(function (html) {
        if (response.ok) { swap(html); return; }
        form.removeAttribute("aria-busy");
        var doc = new DOMParser().parseFromString(html, "text/html");
        var message = doc.querySelector(".error");
        showError(message ? message.textContent : response.status + " " + response.statusText);
      });
    }).catch(function () {
      // the same message id goes again with the next try, so nothing is handled twice
      form.removeAttribute("aria-busy");
      showError(document.documentElement.lang === "en" ? "Network error: please try again."
                                                       : "网络连接出错，请再试一次。");
    });
  });

  document.addEventListener("keydown", function (event) {
    if (event.target && event.target.id === "chat-text" && event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      event.target.form.requestSubmit();
    }
  });

  if (document.readyState !== "loading") { settle(); } else { document.addEventListener("DOMContentLoaded", settle); }
})();
