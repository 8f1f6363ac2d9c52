// The one-resource view's time series, drawn with the vendored uPlot. Each chart has a
// text summary for screen readers (the canvas itself says nothing).
import uPlot from "./vendor/uplot/uPlot.esm.js";
import { h, num } from "./dom.js";

const COLORS = ["#1f5fbf", "#b3261e", "#2e7d32"];
/** Seconds on the x axis: the series' length on the server (SERIES_SECONDS). */
const WINDOW_S = 300;

export class Chart {
  /** series: [{label, unit}] */
  constructor(parent, title, series) {
    this.title = title;
    this.series = series;
    this.summary = h("p.sr-only");
    this.box = h("div.chart-box");
    this.el = h("figure.chart", { "data-chart": title },
      h("figcaption", { text: title }), this.box, this.summary);
    parent.append(this.el);
    this.plot = null;
    this.resize = new ResizeObserver(() => this.fit());
    this.resize.observe(this.box);
  }

  width() {
    return Math.max(200, Math.floor(this.box.clientWidth || 300));
  }

  fit() {
    if (this.plot) this.plot.setSize({ width: this.width(), height: 160 });
  }

  /** xs: unix seconds; ys: one array per series (null = not known then); the x axis
   *  always spans the WINDOW_S seconds up to `end`. */
  set(xs, ys, end) {
    const data = [xs, ...ys];
    this.end = end;
    if (!this.plot) {
      this.plot = new uPlot({
        width: this.width(),
        height: 160,
        legend: { show: this.series.length > 1 },
        cursor: { drag: { x: false, y: false } },
        scales: {
          x: { time: true, range: () => [this.end - WINDOW_S, this.end] },
          y: { range: (u, min, max) => [0, Math.max(1, (max ?? 0) * 1.1)] },
        },
        axes: [{ stroke: "#333" }, { stroke: "#333", size: 56 }],
        series: [
          {},
          ...this.series.map((s, i) => ({
            label: s.label, stroke: COLORS[i % COLORS.length], width: 2, spanGaps: false,
            points: { show: true, size: 3 },
          })),
        ],
      }, data, this.box);
    } else {
      this.plot.setData(data);
    }
    const last = this.series.map((s, i) => {
      const v = [...ys[i]].reverse().find((x) => x !== null && x !== undefined);
      return `${s.label}: ${v === undefined ? "not known" : `${num(v)}${s.unit ? " " + s.unit : ""}`}`;
    });
    this.summary.textContent = `${this.title}, last ${xs.length} seconds. Latest ${last.join(", ")}.`;
  }

  destroy() {
    this.resize.disconnect();
    if (this.plot) this.plot.destroy();
  }
}
