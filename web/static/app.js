// faktory_fast web UI: select-all checkboxes, confirm dialogs, the language selector, the live
// dashboard graph.
// No libraries; everything degrades to plain forms and links without JavaScript.
(function () {
  "use strict";

  document.querySelectorAll("input.check_all").forEach(function (box) {
    box.addEventListener("change", function () {
      box.closest("form").querySelectorAll("tbody input[type=checkbox]").forEach(function (b) {
        b.checked = box.checked;
      });
    });
  });

  document.addEventListener("click", function (ev) {
    var el = ev.target.closest("[data-confirm]");
    if (el && !window.confirm(el.getAttribute("data-confirm"))) ev.preventDefault();
  });

  // the language selector on /debug: remember the choice in Faktory's cookie and reload
  var locale = document.getElementById("locale-select");
  if (locale) {
    locale.addEventListener("change", function () {
      document.cookie = "faktory_locale=" + encodeURIComponent(locale.value) +
        "; path=/; max-age=31536000; samesite=lax";
      window.location.reload();
    });
  }

  var chart = document.getElementById("live");
  if (!chart) return;

  var POINTS = 60, W = 900, H = 220, PAD = 40;
  var slider = document.getElementById("interval");
  var shown = document.getElementById("interval-value");
  var stored = parseInt(window.localStorage.getItem("timeInterval") || "5", 10);
  if (stored >= 2 && stored <= 20) slider.value = stored;
  shown.textContent = slider.value;
  var series = { processed: [], failed: [] };
  var last = null, timer = null;

  function draw() {
    var max = 1;
    ["processed", "failed"].forEach(function (k) {
      series[k].forEach(function (v) { if (v > max) max = v; });
    });
    ["processed", "failed"].forEach(function (k) {
      var n = series[k].length;
      var pts = series[k].map(function (v, i) {
        // newest point at the right edge; the graph fills in leftwards
        var x = PAD + (W - 2 * PAD) * (POINTS - n + i) / (POINTS - 1);
        var y = H - PAD - (H - 2 * PAD) * v / max;
        return x.toFixed(1) + "," + y.toFixed(1);
      });
      document.getElementById("live-" + k).setAttribute("points", pts.join(" "));
      var values = series[k];
      document.getElementById("live-" + k + "-last").textContent = values.length ? values[values.length - 1] : 0;
    });
    document.getElementById("live-max").textContent =
      chart.getAttribute("data-max-label").replace("%{max}", max);
  }

  function updateSummary(doc) {
    var f = doc.faktory, set = function (name, v) {
      var el = document.querySelector('[data-stat="' + name + '"]');
      if (el) el.textContent = Number(v).toLocaleString("en");
    };
    set("processed", f.total_processed); set("failed", f.total_failures);
    set("busy", f.sets.working); set("enqueued", f.total_enqueued);
    set("retries", f.sets.retries); set("scheduled", f.sets.scheduled); set("dead", f.sets.dead);
    var t = document.getElementById("utc-time");
    if (t) t.textContent = doc.server_utc_time;
  }

  function poll() {
    fetch(chart.getAttribute("data-stats"), { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.json(); })
      .then(function (doc) {
        var f = doc.faktory;
        if (last) {
          series.processed.push(Math.max(0, f.total_processed - last.total_processed));
          series.failed.push(Math.max(0, f.total_failures - last.total_failures));
          ["processed", "failed"].forEach(function (k) {
            if (series[k].length > POINTS) series[k].shift();
          });
        }
        last = f;
        updateSummary(doc);
        draw();
      })
      .catch(function () { /* the next poll tries again */ });
  }

  function schedule() {
    if (timer) window.clearInterval(timer);
    timer = window.setInterval(poll, slider.value * 1000);
  }

  slider.addEventListener("input", function () {
    shown.textContent = slider.value;
    window.localStorage.setItem("timeInterval", slider.value);
    schedule();
  });
  poll();
  schedule();
})();
