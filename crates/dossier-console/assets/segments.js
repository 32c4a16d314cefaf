// The segment editor's live count: as the filter changes (300 ms after the last key), ask
// the console how many contacts it matches, or where it does not parse, and say so in the
// <output> beside it (a polite live region). Only the latest answer is shown.
(function () {
  "use strict";
  var box = document.getElementById("definition");
  var out = document.getElementById("live-count");
  if (!box || !out) {
    return;
  }
  var endpoint = box.getAttribute("data-count");
  var timer = null;
  var asked = 0;

  function show(message, bad) {
    out.textContent = message;
    out.className = bad ? "error" : "";
    if (bad) {
      box.setAttribute("aria-invalid", "true");
    } else {
      box.removeAttribute("aria-invalid");
    }
  }

  function update() {
    var filter = box.value;
    if (filter.trim() === "") {
      show("", false);
      return;
    }
    var mine = ++asked;
    out.textContent = "Counting…";
    fetch(endpoint + "?filter=" + encodeURIComponent(filter), {
      credentials: "same-origin",
      headers: { Accept: "application/json" }
    })
      .then(function (r) {
        return r.json();
      })
      .then(function (answer) {
        if (mine !== asked) {
          return;
        }
        if (typeof answer.count === "number") {
          show(answer.count === 1 ? "1 contact matches" : answer.count + " contacts match", false);
        } else {
          show(answer.error || "The filter was refused.", true);
        }
      })
      .catch(function () {
        if (mine === asked) {
          show("The count is unavailable: reload the page (your session may have ended).", true);
        }
      });
  }

  box.addEventListener("input", function () {
    window.clearTimeout(timer);
    timer = window.setTimeout(update, 300);
  });
})();
