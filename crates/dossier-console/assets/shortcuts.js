// The shortcut editor's live preview: as the template, the contact or the session changes
// (300 ms after the last key), post them to the console, which renders the template for that contact
// through the API and answers with the preview section (escaped on the server), or with
// the error and the place it points at. Only the latest answer is shown.
(function () {
  "use strict";
  var form = document.querySelector("form[data-preview]");
  var section = document.getElementById("preview");
  if (!form || !section) {
    return;
  }
  var endpoint = form.getAttribute("data-preview");
  var template = form.elements.namedItem("template");
  var contact = form.elements.namedItem("contact");
  var session = form.elements.namedItem("session");
  var timer = null;
  var asked = 0;

  function update() {
    var mine = ++asked;
    var body = new URLSearchParams();
    body.set("csrf", form.elements.namedItem("csrf").value);
    body.set("template", template.value);
    body.set("contact", contact.value);
    body.set("session", session.value);
    fetch(endpoint, {
      method: "POST",
      credentials: "same-origin",
      headers: { Accept: "application/json" },
      body: body
    })
      .then(function (r) {
        return r.json();
      })
      .then(function (answer) {
        if (mine !== asked) {
          return;
        }
        section.innerHTML = answer.html;
        if (answer.line) {
          template.setAttribute("aria-invalid", "true");
        } else {
          template.removeAttribute("aria-invalid");
        }
      })
      .catch(function () {
        if (mine === asked) {
          section.textContent = "The preview is unavailable: reload the page (your session may have ended).";
        }
      });
  }

  function later() {
    window.clearTimeout(timer);
    timer = window.setTimeout(update, 300);
  }
  template.addEventListener("input", later);
  contact.addEventListener("input", later);
  session.addEventListener("input", later);
})();
