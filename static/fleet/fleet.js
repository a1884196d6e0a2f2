/* Fleet web UI behaviour: small, no framework, no inline handlers (the CSP allows only this file,
   htmx and uPlot). Each feature hooks onto data-* attributes and re-runs after htmx swaps. */
(function () {
  "use strict";

  function each(root, selector, fn) { root.querySelectorAll(selector).forEach(fn); }

  // Copy buttons: <button data-copy="#id">.
  function copyButtons(root) {
    each(root, "[data-copy]", function (btn) {
      if (btn.dataset.bound) return; btn.dataset.bound = "1";
      btn.addEventListener("click", function () {
        var target = document.querySelector(btn.dataset.copy);
        if (!target) return;
        var text = target.textContent.trim();
        var done = function () { btn.textContent = "Copied"; setTimeout(function () { btn.textContent = "Copy"; }, 1500); };
        if (navigator.clipboard && window.isSecureContext) {
          navigator.clipboard.writeText(text).then(done, function () { selectText(target); });
        } else { selectText(target); }
      });
    });
  }
  function selectText(el) { var r = document.createRange(); r.selectNodeContents(el); var s = window.getSelection(); s.removeAllRanges(); s.addRange(r); }

  // Bulk selection: a header checkbox [data-select-all="name"] toggles every input[name=name];
  // [data-selected-count="name"] shows how many are ticked.
  function bulkSelection(root) {
    each(root, "[data-select-all]", function (box) {
      if (box.dataset.bound) return; box.dataset.bound = "1";
      var name = box.dataset.selectAll;
      box.addEventListener("change", function () {
        each(document, 'input[name="' + name + '"]', function (cb) { cb.checked = box.checked; });
        updateCount(name);
      });
    });
    each(root, "input[type=checkbox][data-pick]", function (cb) {
      if (cb.dataset.bound) return; cb.dataset.bound = "1";
      cb.addEventListener("change", function () { updateCount(cb.name); });
    });
  }
  function updateCount(name) {
    var n = document.querySelectorAll('input[name="' + name + '"]:checked').length;
    each(document, '[data-selected-count="' + name + '"]', function (el) { el.textContent = String(n); });
    each(document, '[data-needs-selection="' + name + '"]', function (el) {
      var all = el.form && el.form.querySelector("input[name=all]:checked");
      el.disabled = n === 0 && !all;
    });
  }

  // Bounding boxes: <div class="bbox" data-bbox="[x, y, w, h]"> (normalised 0..1, origin top-left).
  function boxes(root) {
    each(root, "[data-bbox]", function (el) {
      try {
        var b = JSON.parse(el.dataset.bbox);
        el.style.left = (b[0] * 100) + "%"; el.style.top = (b[1] * 100) + "%";
        el.style.width = (b[2] * 100) + "%"; el.style.height = (b[3] * 100) + "%";
      } catch (e) { el.remove(); }
    });
    // Timeline ticks: data-at = position 0..1 along the axis.
    // Inset by 20 px on each side, so a thumbnail at either end stays inside the track.
    each(root, "[data-at]", function (el) { el.style.left = "calc(20px + (100% - 40px) * " + parseFloat(el.dataset.at) + ")"; });
  }

  // Time series: <div class="chart" data-src="url" data-series='[["cpu_pct","CPU %"]]' data-refresh="10">.
  var palette = ["#2455c3", "#c2410c", "#15803d", "#7e22ce", "#0e7490", "#a16207", "#be123c"];
  function charts(root) {
    if (!window.uPlot) return;
    each(root, ".chart[data-src]", function (el) {
      if (el.dataset.bound) return; el.dataset.bound = "1";
      var refresh = parseInt(el.dataset.refresh || "0", 10);
      var load = function () {
        fetch(el.dataset.src, { credentials: "same-origin", headers: { "Accept": "application/json" } })
          .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
          .then(function (data) { draw(el, data); })
          .catch(function () { /* the next refresh tries again */ });
      };
      load();
      if (refresh > 0) {
        var timer = setInterval(function () { if (!document.body.contains(el)) { clearInterval(timer); return; } load(); }, refresh * 1000);
      }
    });
  }
  function draw(el, data) {
    var key = el.dataset.key;
    var block = data[key];
    var hasPoints = block && block.x.length && block.series.some(function (s) { return s.values.some(function (v) { return v !== null; }); });
    el.setAttribute("data-points", hasPoints ? String(block.x.length) : "0");
    if (!hasPoints) {
      if (el._plot) { el._plot.destroy(); el._plot = null; }
      if (!el.querySelector(".none")) { el.textContent = ""; var p = document.createElement("p"); p.className = "none"; p.textContent = el.dataset.empty || "No data in this range yet."; el.appendChild(p); }
      return;
    }
    var none = el.querySelector(".none"); if (none) none.remove();
    var rows = [block.x].concat(block.series.map(function (s) { return s.values; }));
    var width = Math.max(240, el.clientWidth);
    if (el._plot && el._plot.series.length === rows.length) { el._plot.setData(rows); el._plot.setSize({ width: width, height: 180 }); return; }
    if (el._plot) el._plot.destroy();
    var opts = {
      width: width, height: 180, legend: { show: true },
      scales: { x: { time: true } },
      axes: [{}, { size: 50 }],
      series: [{}].concat(block.series.map(function (s, i) {
        return { label: s.label, stroke: palette[i % palette.length], width: 1.5, spanGaps: false };
      }))
    };
    el._plot = new uPlot(opts, rows, el);
  }
  var resizeTimer;
  window.addEventListener("resize", function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(function () { each(document, ".chart", function (el) { if (el._plot) el._plot.setSize({ width: Math.max(240, el.clientWidth), height: 180 }); }); }, 150);
  });

  // Forms that submit on change: <form data-autosubmit>.
  function autosubmit(root) {
    each(root, "form[data-autosubmit]", function (form) {
      if (form.dataset.bound) return; form.dataset.bound = "1";
      form.addEventListener("change", function (e) { if (!e.target.matches("[data-no-autosubmit]")) form.requestSubmit(); });
    });
  }

  // Upload with progress: <form data-upload> containing <progress data-upload-progress>.
  function uploads(root) {
    each(root, "form[data-upload]", function (form) {
      if (form.dataset.bound) return; form.dataset.bound = "1";
      form.addEventListener("submit", function (e) {
        if (!window.FormData || !window.XMLHttpRequest) return;
        e.preventDefault();
        var bar = form.querySelector("[data-upload-progress]");
        var button = form.querySelector("button[type=submit]");
        if (bar) { bar.classList.remove("hidden"); bar.value = 0; }
        if (button) button.disabled = true;
        var xhr = new XMLHttpRequest();
        xhr.open("POST", form.action || window.location.href);
        xhr.setRequestHeader("X-Requested-With", "XMLHttpRequest");
        xhr.upload.addEventListener("progress", function (ev) { if (bar && ev.lengthComputable) bar.value = ev.loaded / ev.total; });
        xhr.addEventListener("load", function () {
          var url = xhr.getResponseHeader("X-Redirect");
          if (url) { window.location.assign(url); return; }
          // Validation errors: the server answered with the page again; swap in its form.
          var doc = new DOMParser().parseFromString(xhr.responseText, "text/html");
          var fresh = doc.querySelector("form[data-upload]");
          if (fresh) { form.replaceWith(fresh); init(fresh.parentNode); } else if (button) { button.disabled = false; }
        });
        xhr.addEventListener("error", function () { if (button) button.disabled = false; if (bar) bar.classList.add("hidden"); });
        xhr.send(new FormData(form));
      });
    });
  }

  function init(root) { copyButtons(root); bulkSelection(root); boxes(root); charts(root); autosubmit(root); uploads(root); }
  document.addEventListener("DOMContentLoaded", function () { init(document); });
  document.addEventListener("htmx:afterSwap", function (e) { init(e.target); });
  // Close other open menus when one opens.
  document.addEventListener("toggle", function (e) {
    if (e.target.matches && e.target.matches("details.menu") && e.target.open) {
      each(document, "details.menu[open]", function (d) { if (d !== e.target) d.open = false; });
    }
  }, true);
})();
