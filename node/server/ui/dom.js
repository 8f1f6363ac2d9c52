// Small DOM and formatting helpers shared by the views. Text always goes in through
// textContent (never innerHTML), so nothing the API returns can become markup.

/** h("tag.class#id", {attrs, on: {event: fn}}, ...children) */
export function h(spec, attrs = {}, ...children) {
  const [tag, ...rest] = spec.split(/(?=[.#])/);
  const el = document.createElement(tag || "div");
  for (const part of rest) {
    if (part.startsWith(".")) el.classList.add(part.slice(1));
    else if (part.startsWith("#")) el.id = part.slice(1);
  }
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "on") {
      for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    } else if (k === "text") {
      el.textContent = String(v);
    } else if (k in el && typeof v !== "string") {
      el[k] = v;
    } else {
      el.setAttribute(k, v === true ? "" : String(v));
    }
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

/** The rows that views rebuild every refresh, by what names them. */
const ROW = "[data-resource], [data-key], [data-member]";
const FOCUSABLE = "a[href], button, input, select, textarea";
const label = (el) => `${el.tagName}|${(el.getAttribute("aria-label") || el.textContent || "").trim()}`;

/**
 * Replaces el's children with `children` (as `clear(el).append(…)`), keeping keyboard
 * focus: a refresh rebuilds the table rows every second, and a user who tabbed to a
 * row's link or button must not be thrown back to the top of the page. When focus was on
 * a control inside `el`, the control with the same label in the row with the same name
 * gets it back (none if that row is gone).
 */
export function replaceKeepingFocus(el, ...children) {
  const active = document.activeElement;
  let place = null;
  if (active && active !== el && el.contains(active) && active.matches(FOCUSABLE)) {
    const row = active.closest(ROW);
    const attrs = row ? [...row.attributes].filter((a) => /^data-(resource|key|member)$/.test(a.name)) : [];
    place = { attrs: attrs.map((a) => [a.name, a.value]), label: label(active) };
  }
  clear(el).append(...children.flat());
  if (place) {
    const rows = place.attrs.length
      ? [...el.querySelectorAll(ROW)].filter((r) => place.attrs.every(([k, v]) => r.getAttribute(k) === v))
      : [el];
    for (const r of rows) {
      const again = [...r.querySelectorAll(FOCUSABLE)].find((c) => label(c) === place.label);
      if (again) {
        again.focus({ preventScroll: true });
        break;
      }
    }
  }
  return el;
}

const nf = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
export function num(v) {
  return v === null || v === undefined ? "–" : nf.format(v);
}

/** A duration in ms, short: 850 ms, 12.3 s, 4 min 10 s, 2 h 5 min. */
export function dur(ms) {
  if (ms === null || ms === undefined) return "–";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${nf.format(s)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.floor(s % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function bytes(n) {
  if (n === null || n === undefined) return "–";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${nf.format(n)} ${u[i]}`;
}

export function windowName(ms) {
  const names = { 1000: "second", 60000: "minute", 3600000: "hour", 86400000: "day" };
  return names[ms] ? `per ${names[ms]}` : `per ${dur(ms)}`;
}

export const kindName = { concurrency: "slots", request: "requests", load: "load" };

/** Pairs each limit with its name: concurrency first, then the rate buckets in order. */
export function namedLimits(limits, config) {
  let r = 0;
  return limits.map((l) => {
    if (l.kind === "concurrency") return { ...l, name: "concurrency slots" };
    const rate = config.rate[r++];
    return { ...l, name: `${kindName[l.kind]} ${rate ? windowName(rate.window_ms) : ""}`.trim() };
  });
}

/** A meter of how much of a limit is used. */
export function usageBar(limit, label) {
  const used = limit.limit - limit.remaining;
  const frac = limit.limit > 0 ? Math.max(0, Math.min(1, used / limit.limit)) : 0;
  const m = h("meter.usage", {
    min: "0", max: String(limit.limit), value: String(Math.max(0, Math.min(limit.limit, used))),
    "aria-label": label, title: `${num(used)} of ${num(limit.limit)} used`,
  });
  if (frac >= 0.9) m.classList.add("hot");
  return m;
}
