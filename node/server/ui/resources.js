// The resources list: config and live use of every visible resource, filtered, sorted
// and paginated by the server (10 000 resources cost one page), plus the create/edit
// form, whose errors are the API's own, shown next to the field they name.
import { ApiError, call, get, seg } from "./api.js";
import { clear, dur, h, namedLimits, num, replaceKeepingFocus, usageBar } from "./dom.js";

export const name = "resources";

const COLUMNS = [
  { key: "name", label: "Name" },
  { key: "held", label: "Slots held" },
  { key: "usage", label: "Use of the fullest limit" },
  { key: "waiting", label: "Waiting" },
  { key: "rate", label: "Grants/s" },
];
const PAGE_SIZES = [25, 50, 100, 200];

export function mount(el, _params, ctx) {
  const st = { filter: "", sort: "name", desc: false, offset: 0, limit: 50, total: 0 };
  const admin = ctx.session.may.manage;
  const filter = h("input#filter", {
    type: "search", autocomplete: "off", placeholder: "name contains…",
    on: { input: () => { st.filter = filter.value; st.offset = 0; view.refresh().catch(ctx.say); } },
  });
  const size = h("select#page-size", {
    on: { change: () => { st.limit = Number(size.value); st.offset = 0; view.refresh().catch(ctx.say); } },
  }, PAGE_SIZES.map((n) => h("option", { value: String(n), selected: n === st.limit, text: String(n) })));
  const formSlot = h("div.form-slot");
  const heads = COLUMNS.map((c) => {
    const b = h("button.sort", { type: "button", text: c.label, on: { click: () => {
      if (st.sort === c.key) st.desc = !st.desc;
      else { st.sort = c.key; st.desc = c.key !== "name"; }
      st.offset = 0;
      view.refresh().catch(ctx.say);
    } } });
    return h("th", { scope: "col", "data-sort": c.key }, b);
  });
  const limitsHead = h("th", { scope: "col", text: "Rate limits (left / limit)" });
  const tbody = h("tbody");
  const status = h("p.page-status", { "aria-live": "polite" });
  const prev = h("button", { type: "button", text: "Previous page", on: { click: () => {
    st.offset = Math.max(0, st.offset - st.limit); view.refresh().catch(ctx.say);
  } } });
  const next = h("button", { type: "button", text: "Next page", on: { click: () => {
    st.offset += st.limit; view.refresh().catch(ctx.say);
  } } });

  el.append(
    h("div.title-row", {},
      h("h1", { text: "Resources" }),
      admin ? h("button.primary", { type: "button", text: "New resource", on: { click: () => {
        clear(formSlot).append(resourceForm(null, () => { clear(formSlot); view.refresh().catch(ctx.say); }, () => clear(formSlot)));
        formSlot.querySelector("input")?.focus();
      } } }) : null),
    h("p#scope.help", { text: scopeText(ctx.session) }),
    formSlot,
    h("div.toolbar", {},
      h("label", { for: "filter", text: "Filter by name" }), filter,
      h("label", { for: "page-size", text: "Rows per page" }), size),
    h("div.table-wrap", {},
      h("table#resources", {},
        h("caption.sr-only", { text: "Resources with their limits and live use. Column headers sort." }),
        h("thead", {}, h("tr", {}, heads.slice(0, 2), limitsHead, heads.slice(2))),
        tbody)),
    h("div.pager", {}, prev, status, next),
  );

  const view = {
    async refresh() {
      const q = new URLSearchParams({
        filter: st.filter, sort: st.sort, desc: String(st.desc),
        offset: String(st.offset), limit: String(st.limit),
      });
      const page = await get(`/v1/dashboard/resources?${q}`);
      if (page.total > 0 && st.offset >= page.total) {
        st.offset = Math.max(0, Math.floor((page.total - 1) / st.limit) * st.limit);
        return view.refresh();
      }
      st.total = page.total;
      for (const th of heads) {
        const k = th.dataset.sort;
        th.setAttribute("aria-sort", k === st.sort ? (st.desc ? "descending" : "ascending") : "none");
      }
      replaceKeepingFocus(tbody, page.rows.map(row));
      if (!page.rows.length) {
        const none = !ctx.session.may.see_every_resource && !ctx.session.key?.resources.length
          ? "This key may see no resource." : st.filter ? "No resource matches." : "No resources yet.";
        tbody.append(h("tr", {}, h("td", { colspan: "6", text: none })));
      }
      const from = page.total ? st.offset + 1 : 0;
      status.textContent = `${num(from)}–${num(st.offset + page.rows.length)} of ${num(page.total)}`;
      prev.disabled = st.offset === 0;
      next.disabled = st.offset + st.limit >= page.total;
    },
  };
  return view;
}

/** What the signed-in key may see and do, in words (the server's rules, from the session). */
export function scopeText(session) {
  const k = session.key;
  if (!k) return "Signed in with the admin token: every resource, key and member.";
  const expiry = k.expires_in_ms === null ? "" : ` The key expires in ${dur(k.expires_in_ms)}.`;
  if (session.may.manage) return `Key ${k.name} is an admin key: it sees and changes everything.${expiry}`;
  if (!session.may.hold_leases) {
    return `Key ${k.name} is read-only (monitor): it sees every resource and the cluster and changes nothing.${expiry}`;
  }
  if (!k.resources.length) return `Key ${k.name} may see and use no resource: its patterns name none.${expiry}`;
  const lanes = k.lanes.length ? `in lanes ${k.lanes.join(", ")}` : "in any lane";
  const prio = k.max_priority === null ? "at any priority" : `at priority at most ${k.max_priority}`;
  return `Key ${k.name} may acquire on resources matching ${k.resources.join(", ")}, ${lanes}, ${prio}; `
    + `at most ${num(k.max_waiters)} waiting and ${num(k.max_in_flight)} in flight at once. `
    + `It sees only those resources, and only its own leases.${expiry}`;
}

function row(r) {
  const limits = namedLimits(r.limits, r.config);
  const conc = limits.find((l) => l.kind === "concurrency");
  const rates = limits.filter((l) => l.kind !== "concurrency");
  const lanes = Object.entries(r.waiting);
  return h("tr", { "data-resource": r.name },
    h("th", { scope: "row" }, h("a", { href: `#/resources/${seg(r.name)}`, text: r.name })),
    h("td", { "data-col": "held" }, conc
      ? h("span.cell-limit", {}, `${num(r.held)} / ${num(conc.limit)}`, usageBar({ ...conc }, `${r.name} slots used`))
      : `${num(r.held)}`),
    h("td", { "data-col": "rates" }, rates.length
      ? h("ul.plain", {}, rates.map((l) => h("li", {}, `${l.name}: ${num(l.remaining)} / ${num(l.limit)}`)))
      : "–"),
    h("td", { "data-col": "usage" }, `${num(Math.round(r.usage * 100))} %`),
    h("td", { "data-col": "waiting" }, lanes.length
      ? h("span", {}, `${num(r.waiting_total)}`, h("span.lanes", { text: ` (${lanes.map(([l, n]) => `${l}: ${n}`).join(", ")})` }))
      : "0"),
    h("td", { "data-col": "rate" }, num(r.grants_per_s)),
  );
}

/** Which field an API validation message is about (the message's own words). */
function fieldOf(message) {
  const m = message.toLowerCase();
  const rules = [
    ["name", /resource name|name must|name may/],
    ["concurrency", /concurrency|at least one limit/],
    ["window_ms", /window_ms/],
    ["rate", /rate|bucket/],
    ["lanes", /lane/],
    ["default_ttl_ms", /default_ttl_ms/],
    ["max_queue", /max_queue/],
  ];
  for (const [f, re] of rules) if (re.test(m)) return f;
  return "form";
}

/**
 * The create/edit form. `existing` is a resource (name and config) or null. The form
 * sends what was typed; the API validates, and its message is shown at the field.
 */
export function resourceForm(existing, done, cancel) {
  const cfg = existing ? existing.config : { concurrency: 4, rate: [] };
  const errors = {};
  const err = (f) => (errors[f] = h(`p#err-${f}.field-error`, { role: "alert" }));
  const field = (id, label, input, help) => h("div.field", {}, h("label", { for: id, text: label }), input,
    help ? h("p.help", { text: help }) : null, err(id.replace(/^f-/, "")));
  const nameIn = h("input#f-name", { value: existing ? existing.name : "", required: true, disabled: !!existing,
    autocomplete: "off", "aria-describedby": "err-name" });
  const concIn = h("input#f-concurrency", { type: "number", value: cfg.concurrency ?? "", "aria-describedby": "err-concurrency" });
  const ttlIn = h("input#f-default_ttl_ms", { type: "number", value: cfg.default_ttl_ms ?? "", placeholder: "30000", "aria-describedby": "err-default_ttl_ms" });
  const queueIn = h("input#f-max_queue", { type: "number", value: cfg.max_queue ?? "", placeholder: "10000", "aria-describedby": "err-max_queue" });
  const rateRows = h("div.rows#f-rate");
  const laneRows = h("div.rows#f-lanes");
  let n = 0;
  const addRate = (r = { per: "request", limit: "", window_ms: 60000 }) => {
    const i = n++;
    const per = h(`select#rate-per-${i}`, {}, ["request", "load"].map((p) => h("option", { value: p, selected: r.per === p, text: p === "request" ? "requests" : "load" })));
    const limit = h(`input#rate-limit-${i}`, { type: "number", value: r.limit, "aria-describedby": "err-rate" });
    const win = h(`input#rate-window-${i}`, { type: "number", value: r.window_ms, "aria-describedby": "err-window_ms" });
    const line = h("fieldset.row", { "data-rate": "" },
      h("legend.sr-only", { text: `Rate limit ${i + 1}` }),
      h("label", { for: per.id, text: "Counts" }), per,
      h("label", { for: limit.id, text: "Limit" }), limit,
      h("label", { for: win.id, text: "Window (ms)" }), win,
      h("button.link", { type: "button", text: "Remove", on: { click: () => line.remove() } }));
    line.read = () => ({ per: per.value, limit: Number(limit.value), window_ms: Number(win.value) });
    rateRows.append(line);
  };
  const addLane = (name = "", weight = 1) => {
    const i = n++;
    const ln = h(`input#lane-name-${i}`, { value: name, autocomplete: "off", "aria-describedby": "err-lanes" });
    const w = h(`input#lane-weight-${i}`, { type: "number", value: weight, "aria-describedby": "err-lanes" });
    const line = h("fieldset.row", { "data-lane": "" },
      h("legend.sr-only", { text: `Lane ${i + 1}` }),
      h("label", { for: ln.id, text: "Lane" }), ln,
      h("label", { for: w.id, text: "Weight" }), w,
      h("button.link", { type: "button", text: "Remove", on: { click: () => line.remove() } }));
    line.read = () => [ln.value.trim(), { weight: Number(w.value) }];
    laneRows.append(line);
  };
  for (const r of cfg.rate || []) addRate(r);
  for (const [l, v] of Object.entries(cfg.lanes || {})) addLane(l, v.weight);
  const formError = err("form");
  const submit = h("button.primary", { type: "submit", text: existing ? "Save" : "Create" });
  const form = h("form.panel#resource-form", { "aria-labelledby": "form-title", on: { submit: async (ev) => {
    ev.preventDefault();
    for (const e of Object.values(errors)) e.textContent = "";
    for (const i of form.querySelectorAll("[aria-invalid]")) i.removeAttribute("aria-invalid");
    const body = { rate: [...rateRows.children].map((r) => r.read()), lanes: Object.fromEntries([...laneRows.children].map((r) => r.read())) };
    if (concIn.value !== "") body.concurrency = Number(concIn.value);
    if (ttlIn.value !== "") body.default_ttl_ms = Number(ttlIn.value);
    if (queueIn.value !== "") body.max_queue = Number(queueIn.value);
    const nm = nameIn.value.trim();
    submit.disabled = true;
    try {
      if (!nm) throw new ApiError(400, "invalid_request", "resource name must be 1..=128 characters");
      await call("PUT", `/v1/resources/${seg(nm)}`, body);
      done(nm);
    } catch (e) {
      const f = e instanceof ApiError && e.status === 400 ? fieldOf(e.message) : "form";
      errors[f].textContent = e.message;
      const input = form.querySelector(`#f-${f}`);
      if (input) input.setAttribute("aria-invalid", "true");
      (input?.matches("input,select") ? input : input?.querySelector("input") ?? submit).focus();
    } finally {
      submit.disabled = false;
    }
  } } },
  h("h2#form-title", { text: existing ? `Edit ${existing.name}` : "New resource" }),
  field("f-name", "Name", nameIn, "1–128 characters of A–Z a–z 0–9 . _ : -"),
  field("f-concurrency", "Concurrency (slots held at once; empty for none)", concIn),
  h("div.field", {}, h("span.label", { text: "Rate limits" }), rateRows,
    h("button.link", { type: "button", text: "Add a rate limit", on: { click: () => addRate() } }), err("rate"), err("window_ms")),
  h("div.field", {}, h("span.label", { text: "Lanes (weights; unlisted lanes weigh 1)" }), laneRows,
    h("button.link", { type: "button", text: "Add a lane", on: { click: () => addLane() } }), err("lanes")),
  field("f-default_ttl_ms", "Default lease TTL (ms)", ttlIn),
  field("f-max_queue", "Queue bound (waiters)", queueIn),
  formError,
  h("div.actions", {}, submit, h("button", { type: "button", text: "Cancel", on: { click: cancel } })));
  return form;
}

