// Live progress of a source's runs: listens to /sources/{name}/progress (server-sent events
// of the syncProgress subscription) and says what the run is doing; when a run ends, the page
// reloads to show it in the history.
(function () {
  "use strict";
  var el = document.querySelector("[data-progress]");
  if (!el || !window.EventSource) {
    return;
  }
  var events = new EventSource(el.getAttribute("data-progress"));
  var read = {};
  events.addEventListener("refused", function (e) {
    el.textContent = "Live progress is not available: " + e.data;
    events.close();
  });
  events.onmessage = function (e) {
    var p = JSON.parse(e.data);
    if (!p) {
      return;
    }
    if (p.kind === "RUN_STARTED") {
      read = {};
      el.textContent = "Run " + p.runId + " started.";
    } else if (p.kind === "STREAM_STARTED") {
      el.textContent = "Run " + p.runId + ": reading " + p.stream + "…";
    } else if (p.kind === "BATCH_COMMITTED") {
      read[p.stream] = p.streamRows;
      var total = 0;
      Object.keys(read).forEach(function (k) { total += read[k] || 0; });
      el.textContent = "Run " + p.runId + ": " + p.stream + " " + p.streamRows +
        " rows so far (" + total + " in all).";
    } else if (p.kind === "STREAM_FINISHED") {
      el.textContent = "Run " + p.runId + ": " + p.stream + " done, " + p.read + " read, " +
        p.written + " written, " + p.rejected + " rejected, " + p.deleted + " deleted.";
    } else if (p.kind === "RUN_FINISHED") {
      el.textContent = "Run " + p.runId + (p.error ? " failed: " + p.error : " finished") +
        " in " + (p.elapsedSeconds || 0).toFixed(1) + " s.";
      events.close();
      setTimeout(function () { window.location.reload(); }, 1500);
    }
  };
})();
