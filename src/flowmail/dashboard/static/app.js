// flowmail dashboard: charts from <script type="application/json"> data (uPlot), and
// re-drawn after htmx swaps. No inline scripts (the pages' CSP forbids them).
(function () {
  "use strict";
  var palette = ["#2f5bd3", "#23834d", "#b4421c", "#a46a00", "#7a3fc2"];

  function draw(el) {
    if (el.dataset.drawn || typeof uPlot === "undefined") return;
    var source = document.getElementById(el.dataset.chart);
    if (!source) return;
    var data = JSON.parse(source.textContent);
    var columns = [data.t];
    var series = [{}];
    el.dataset.series.split(",").forEach(function (spec, i) {
      var parts = spec.split(":");
      columns.push(data[parts[0]] || []);
      var line = { label: parts[1] || parts[0], stroke: palette[i % palette.length], width: 1.5 };
      if (el.dataset.bars) {
        line.paths = uPlot.paths.bars({ size: [0.6, 40] });
        line.fill = palette[i % palette.length] + "55";
      }
      series.push(line);
    });
    var width = Math.max(300, el.clientWidth || el.parentElement.clientWidth || 600);
    var scales = {
      // the whole period, not just the span of the points
      x: { time: true, range: function () { return data.range; } },
      // from zero up
      y: { range: function (u, min, max) { return [0, max > 0 ? max * 1.1 : 1]; } },
    };
    new uPlot({ width: width, height: 200, series: series, scales: scales }, columns, el);
    el.dataset.drawn = "1";
  }

  function drawAll(root) {
    (root || document).querySelectorAll("[data-chart]").forEach(draw);
  }

  document.addEventListener("DOMContentLoaded", function () { drawAll(document); });
  document.addEventListener("htmx:afterSettle", function (event) { drawAll(event.target); });
})();
