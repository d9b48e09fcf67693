// faktory_fast web UI: the menu on narrow screens, select-all checkboxes, confirm dialogs, long
// cells that open on a click, the language selector, the live dashboard chart and the "live"
// toggle of the Busy and Queues pages.
// No libraries, no inline script (the pages' Content-Security-Policy forbids it); everything
// degrades to plain forms and links without JavaScript.
// Loaded in <head>: it marks the page as scripted (CSS folds the narrow-screen menu only then)
// before the first paint, and wires the rest up once the document is parsed.
(function () {
  "use strict";

  document.documentElement.classList.add("js");
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", main);
  else main();

  function main() {
    var store = window.localStorage;

    function pollSeconds() {
      var stored = parseInt(store.getItem("timeInterval") || "5", 10);
      return stored >= 2 && stored <= 20 ? stored : 5;
    }

    // -- the menu: a button shows it on narrow screens (CSS hides it there) ---------------------
    var toggle = document.querySelector(".menu-toggle");
    if (toggle) {
      toggle.addEventListener("click", function () {
        var open = toggle.getAttribute("aria-expanded") !== "true";
        toggle.setAttribute("aria-expanded", open ? "true" : "false");
        var menu = document.getElementById(toggle.getAttribute("aria-controls"));
        menu.classList.toggle("open", open);
      });
    }

    // -- delegated, so they survive the live pages' refreshes ---------------------------------
    document.addEventListener("change", function (ev) {
      var box = ev.target;
      if (!box.matches || !box.matches("input.check_all")) return;
      box.closest("form").querySelectorAll("tbody input[type=checkbox]").forEach(function (b) {
        b.checked = box.checked;
      });
    });

    document.addEventListener("click", function (ev) {
      var el = ev.target.closest("[data-confirm]");
      if (el && !window.confirm(el.getAttribute("data-confirm"))) {
        ev.preventDefault();
        ev.stopPropagation();
      }
    });

    // Long cells (arguments, error messages) are cut at a few lines by CSS; the ones that were
    // cut open and close on a click (or Enter / space).
    function clips(root) {
      root.querySelectorAll(".clip").forEach(function (el) {
        if (el.scrollHeight <= el.clientHeight + 1 || el.classList.contains("clipped")) return;
        el.classList.add("clipped");
        el.setAttribute("tabindex", "0");
        el.setAttribute("role", "button");
        el.setAttribute("aria-expanded", "false");
        el.setAttribute("title", el.getAttribute("data-more"));
      });
    }
    function flip(el) {
      var open = el.classList.toggle("open");
      el.setAttribute("aria-expanded", open ? "true" : "false");
    }
    document.addEventListener("click", function (ev) {
      var el = ev.target.closest(".clip.clipped");
      if (el && !window.getSelection().toString()) flip(el);  // selecting text is not a click
    });
    document.addEventListener("keydown", function (ev) {
      if ((ev.key === "Enter" || ev.key === " ") && ev.target.matches(".clip.clipped")) {
        ev.preventDefault();
        flip(ev.target);
      }
    });
    clips(document);

    // the language selector on /debug: remember the choice in Faktory's cookie and reload
    var locale = document.getElementById("locale-select");
    if (locale) {
      locale.addEventListener("change", function () {
        document.cookie = "faktory_locale=" + encodeURIComponent(locale.value) +
          "; path=/; max-age=31536000; samesite=lax";
        window.location.reload();
      });
    }

    // -- polling that stops while the tab is hidden --------------------------------------------
    // poller(fn): start() runs fn now and every pollSeconds() while the page is visible.
    function poller(fn, onResume) {
      var timer = null, wanted = false;
      function stop() {
        if (timer) window.clearInterval(timer);
        timer = null;
      }
      function run() {
        stop();
        if (!wanted || document.hidden) return;
        fn();
        timer = window.setInterval(fn, pollSeconds() * 1000);
      }
      document.addEventListener("visibilitychange", function () {
        if (document.hidden) stop();
        else if (wanted) {
          if (onResume) onResume();
          run();
        }
      });
      return {
        start: function () { wanted = true; run(); },
        stop: function () { wanted = false; stop(); },
        restart: run,
        active: function () { return timer !== null; }
      };
    }

    function number(v) { return Number(v).toLocaleString("en"); }

    function updateSummary(doc) {
      var f = doc.faktory, set = function (name, v) {
        var el = document.querySelector('[data-stat="' + name + '"]');
        if (el) el.textContent = number(v);
      };
      set("processed", f.total_processed); set("failed", f.total_failures);
      set("busy", f.sets.working); set("enqueued", f.total_enqueued);
      set("retries", f.sets.retries); set("scheduled", f.sets.scheduled); set("dead", f.sets.dead);
      var t = document.getElementById("utc-time");
      if (t) t.textContent = doc.server_utc_time;
    }

    // -- Busy and Queues: "live" re-reads the page and swaps in its tables and the summary ----
    var live = document.getElementById("live-toggle");
    if (live) {
      var refresh = poller(function () {
        fetch(window.location.href, { credentials: "same-origin", cache: "no-store" })
          .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
          .then(function (html) {
            var doc = new DOMParser().parseFromString(html, "text/html");
            ["live-region", "status"].forEach(function (id) {
              var now = document.getElementById(id), next = doc.getElementById(id);
              if (now && next) now.replaceWith(document.adoptNode(next));
            });
            var summary = document.querySelector(".summary"), next = doc.querySelector(".summary");
            if (summary && next) summary.replaceWith(document.adoptNode(next));
            clips(document);
          })
          .catch(function () { /* the next poll tries again */ });
      });
      var state = function () {
        var now = !live.checked ? "off" : refresh.active() ? "live" : "paused";
        live.setAttribute("data-state", now);
      };
      document.addEventListener("visibilitychange", state);
      live.checked = store.getItem("livePoll") === "1";
      live.addEventListener("change", function () {
        store.setItem("livePoll", live.checked ? "1" : "0");
        if (live.checked) refresh.start(); else refresh.stop();
        state();
      });
      if (live.checked) refresh.start();
      state();
    }

    // -- the dashboard's live chart (the rules of charts.py) -----------------------------------
    var chart = document.getElementById("live");
    if (!chart) return;

    var POINTS = 60, W = 1000, H = 200;
    var slider = document.getElementById("interval");
    var shown = document.getElementById("interval-value");
    slider.value = pollSeconds();
    shown.textContent = slider.value;
    var series = { processed: [], failed: [] }, times = [];
    var last = null;

    function niceMax(v) {
      for (var scale = 1; ; scale *= 10) {
        for (var i = 0, steps = [1, 2, 5]; i < steps.length; i++) {
          if (steps[i] * scale >= v) return steps[i] * scale;
        }
      }
    }

    function draw() {
      var max = 2;
      ["processed", "failed"].forEach(function (k) {
        series[k].forEach(function (v) { if (v > max) max = v; });
      });
      var top = niceMax(max);
      ["processed", "failed"].forEach(function (k) {
        var n = series[k].length;
        var pts = series[k].map(function (v, i) {
          // newest point at the right edge; the graph fills in leftwards
          var x = W * (POINTS - n + i) / (POINTS - 1);
          var y = H - H * v / top;
          return x.toFixed(1) + "," + y.toFixed(1);
        });
        document.getElementById("live-" + k).setAttribute("points", pts.join(" "));
        var lastValue = document.getElementById("live-" + k + "-last");
        lastValue.textContent = n ? number(series[k][n - 1]) : "0";
      });
      var y = document.getElementById("live-y").children;
      y[0].textContent = number(top); y[1].textContent = number(top / 2); y[2].textContent = "0";
      var x = document.getElementById("live-x").children;
      x[0].textContent = times.length ? times[0] : "";
      x[1].textContent = times.length ? times[times.length - 1] : "";
    }

    var polling = poller(function () {
      fetch(chart.getAttribute("data-stats"), { credentials: "same-origin", cache: "no-store" })
        .then(function (r) { return r.json(); })
        .then(function (doc) {
          var f = doc.faktory;
          if (last) {
            series.processed.push(Math.max(0, f.total_processed - last.total_processed));
            series.failed.push(Math.max(0, f.total_failures - last.total_failures));
            times.push(String(doc.server_utc_time).replace(/ UTC$/, ""));
            [series.processed, series.failed, times].forEach(function (s) {
              if (s.length > POINTS) s.shift();
            });
          }
          last = f;
          updateSummary(doc);
          draw();
        })
        .catch(function () { /* the next poll tries again */ });
    }, function () { last = null; });  // back from a hidden tab: no point spanning the gap

    slider.addEventListener("input", function () {
      shown.textContent = slider.value;
      store.setItem("timeInterval", slider.value);
      polling.restart();
    });
    draw();
    polling.start();
  }
})();
