// What the browser tests check on every view they show (docs/dashboard.md,
// "Accessibility and screens"), computed in the page from the rendered DOM and styles:
// - every form control has a label, every button and link a name;
// - one h1, and no heading level skipped;
// - WCAG AA contrast of every visible piece of text (4.5:1, 3:1 for large text) against
//   the background it is drawn on (ancestors' backgrounds composited, opacity applied);
//   disabled controls are exempt, as WCAG exempts inactive components;
// - the page never scrolls sideways (wide tables scroll inside their own box).
// Returns the problems found, as text; an empty list is a pass.

export async function accessibilityProblems(page) {
  return page.evaluate(() => {
    const problems = [];
    const shown = (el) => {
      const r = el.getBoundingClientRect();
      const s = getComputedStyle(el);
      // 1×1 boxes are the screen-reader-only texts (`.sr-only`): not drawn.
      return r.width > 1 && r.height > 1 && s.visibility !== "hidden" && s.display !== "none";
    };
    const describe = (el) => {
      const cls = typeof el.className === "string" && el.className.trim() ? `.${el.className.trim().split(/\s+/).join(".")}` : "";
      const text = (el.textContent || "").trim().slice(0, 40);
      return `${el.tagName.toLowerCase()}${el.id ? `#${el.id}` : ""}${cls}${text ? ` "${text}"` : ""}`;
    };

    for (const el of document.querySelectorAll("input, select, textarea")) {
      if (el.type === "hidden") continue;
      const labelled = (el.labels && el.labels.length > 0) || el.getAttribute("aria-label") || el.getAttribute("aria-labelledby");
      if (!labelled) problems.push(`${describe(el)}: a form control without a label`);
    }
    for (const el of document.querySelectorAll("button, a[href], [role=button]")) {
      if (!shown(el)) continue;
      const name = (el.getAttribute("aria-label") || el.textContent || el.getAttribute("title") || "").trim();
      if (!name) problems.push(`${describe(el)}: a control without a name`);
    }

    const headings = [...document.querySelectorAll("h1, h2, h3, h4, h5, h6")].filter(shown);
    const h1s = headings.filter((h) => h.tagName === "H1").length;
    if (h1s !== 1) problems.push(`${h1s} h1 headings (one expected)`);
    let level = 0;
    for (const h of headings) {
      const l = Number(h.tagName[1]);
      if (l > level + 1) problems.push(`${describe(h)}: heading level ${l} after ${level}`);
      level = l;
    }

    const rgba = (c) => {
      const m = c.match(/^rgba?\(([^)]+)\)$/);
      if (!m) return null;
      const p = m[1].split(/[,\s/]+/).filter(Boolean).map(Number);
      return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 };
    };
    const over = (top, under) => ({
      r: top.r * top.a + under.r * (1 - top.a),
      g: top.g * top.a + under.g * (1 - top.a),
      b: top.b * top.a + under.b * (1 - top.a),
      a: 1,
    });
    const background = (el) => {
      const layers = [];
      for (let e = el; e; e = e.parentElement) {
        const c = rgba(getComputedStyle(e).backgroundColor);
        if (c && c.a > 0) {
          layers.push(c);
          if (c.a >= 1) break;
        }
      }
      let bg = { r: 255, g: 255, b: 255, a: 1 };
      for (const c of layers.reverse()) bg = over(c, bg);
      return bg;
    };
    const opacity = (el) => {
      let o = 1;
      for (let e = el; e; e = e.parentElement) o *= Number(getComputedStyle(e).opacity);
      return o;
    };
    const luminance = ({ r, g, b }) => {
      const f = (v) => {
        const s = v / 255;
        return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
      };
      return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
    };
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    const seen = new Set();
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      const el = n.parentElement;
      if (!el || seen.has(el) || !n.textContent.trim()) continue;
      seen.add(el);
      if (!shown(el) || el.closest(":disabled, script, style, option")) continue;
      const s = getComputedStyle(el);
      const fg = rgba(s.color);
      if (!fg) {
        problems.push(`${describe(el)}: colour ${s.color} not understood`);
        continue;
      }
      const bg = background(el);
      const text = over({ ...fg, a: fg.a * opacity(el) }, bg);
      const [hi, lo] = [luminance(text), luminance(bg)].sort((a, b) => b - a);
      const ratio = (hi + 0.05) / (lo + 0.05);
      const px = parseFloat(s.fontSize);
      const large = px >= 24 || (px >= 18.66 && Number(s.fontWeight) >= 700);
      const need = large ? 3 : 4.5;
      if (ratio < need) problems.push(`${describe(el)}: contrast ${ratio.toFixed(2)}:1 < ${need}:1`);
    }

    const wide = document.documentElement.scrollWidth;
    if (wide > window.innerWidth + 1) problems.push(`the page is ${wide}px wide in a ${window.innerWidth}px window: it scrolls sideways`);
    return problems;
  });
}

// Keyboard: presses Tab `presses` times from the top of the page; each element reached
// must be a control a user would expect to reach, be on screen once focused (the skip
// link moves into view) and show the focus ring (`:focus-visible`: a solid outline of
// at least 2 px). Returns the problems, as text, and the focus order seen.
export async function keyboardProblems(page, presses = 20) {
  // Start from the top: focus the root element for a moment, so that the next Tab is the
  // page's first (a view's own focus on its h1 would otherwise be the starting point).
  await page.evaluate(() => {
    const root = document.documentElement;
    root.tabIndex = -1;
    root.focus();
    root.removeAttribute("tabindex");
    window.scrollTo(0, 0);
  });
  const problems = [];
  const order = [];
  for (let i = 0; i < presses; i++) {
    await page.keyboard.press("Tab");
    const f = await page.evaluate(() => {
      const el = document.activeElement;
      if (!el || el === document.body) return null;
      const s = getComputedStyle(el);
      const r = el.getBoundingClientRect();
      return {
        what: `${el.tagName.toLowerCase()}${el.id ? `#${el.id}` : ""} "${(el.getAttribute("aria-label") || el.textContent || el.getAttribute("placeholder") || "").trim().slice(0, 30)}"`,
        control: el.matches("a[href], button, input, select, textarea, summary, [tabindex]"),
        ring: s.outlineStyle !== "none" && parseFloat(s.outlineWidth) >= 2,
        onScreen: r.width > 0 && r.height > 0 && r.right > 0 && r.left < window.innerWidth,
      };
    });
    if (!f) break; // past the last control
    order.push(f.what);
    if (!f.control) problems.push(`${f.what}: reached by Tab but not a control`);
    if (!f.ring) problems.push(`${f.what}: no visible focus ring`);
    if (!f.onScreen) problems.push(`${f.what}: focused off screen`);
  }
  if (order.length === 0) problems.push("Tab reaches nothing");
  return { problems, order };
}
