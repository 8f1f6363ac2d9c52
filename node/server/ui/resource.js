// One resource: its limits and their use, why requests wait (the binding limit), the
// queue by lane and priority, the held leases, and per-second charts of the last
// minutes. One call per refresh: GET /v1/dashboard/resources/{name}.
import { ApiError, call, get, seg } from "./api.js";
import { Chart } from "./charts.js";
import { clear, dur, h, namedLimits, num, usageBar } from "./dom.js";
import { resourceForm } from "./resources.js";

export const name = "resource";

const KIND = { concurrency: "the concurrency limit", request: "the request rate", load: "the load rate" };

export function mount(el, params, ctx) {
  const admin = ctx.session.may.manage;
  const everyLease = ctx.session.may.see_every_lease;
  const rname = params.name;
  let last = null;
  const formSlot = h("div.form-slot");
  const limitsBox = h("div.cards#limits");
  const why = h("section.why#why", { "aria-labelledby": "why-title", "aria-live": "polite" });
  const queueBody = h("tbody");
  const leasesBody = h("tbody");
  const leasesNote = h("p#leases-note.help");
  const chartsBox = h("div.charts");
  const seriesNote = h("p.help");
  const actions = admin ? h("div.actions", {},
    h("button", { type: "button", text: "Edit limits", on: { click: () => {
      if (!last) return;
      clear(formSlot).append(resourceForm(last, () => { clear(formSlot); view.refresh().catch(ctx.say); }, () => clear(formSlot)));
      formSlot.querySelector("#f-concurrency")?.focus();
    } } }),
    h("button.danger", { type: "button", text: "Delete", on: { click: async () => {
      if (!confirm(`Delete resource ${rname}? Its leases end and its waiters are refused.`)) return;
      try {
        await call("DELETE", `/v1/resources/${seg(rname)}`);
        ctx.navigate("#/resources");
      } catch (e) { ctx.say(e.message); }
    } } })) : null;

  el.append(
    h("p.crumbs", {}, h("a", { href: "#/resources", text: "Resources" }), " / ", rname),
    h("div.title-row", {}, h("h1", { text: rname }), actions),
    formSlot,
    h("section", { "aria-labelledby": "limits-title" }, h("h2#limits-title", { text: "Limits" }), limitsBox),
    why,
    h("section", { "aria-labelledby": "charts-title" }, h("h2#charts-title", { text: "Last minutes" }), seriesNote, chartsBox),
    h("section", { "aria-labelledby": "queue-title" },
      h("h2#queue-title", { text: "Queue by lane and priority" }),
      h("div.table-wrap", {}, h("table#queue", {},
        h("thead", {}, h("tr", {}, ["Lane", "Weight", "Priority", "Waiting", "Oldest wait"].map((t) => h("th", { scope: "col", text: t })))),
        queueBody))),
    // Each waiter's own position and estimate is the API's waiter progress call (its
    // SDK's progress callback); this view shows the head of line's in "Why requests wait".
    h("section#standing", { "aria-labelledby": "standing-title", hidden: true }, h("h2#standing-title", { text: "Where waiters stand" })),
    h("section", { "aria-labelledby": "leases-title" },
      h("h2#leases-title", { text: "Held leases" }), leasesNote,
      h("div.table-wrap", {}, h("table#leases", {},
        h("thead", {}, h("tr", {}, ["Fencing token", "Holder", everyLease ? "Key" : null, "Lane", "Load", "Held for", "Expires in"]
          .filter((t) => t !== null).map((t) => h("th", { scope: "col", text: t })))),
        leasesBody))),
  );

  const charts = [
    [new Chart(chartsBox, "Grants per second", [{ label: "grants/s" }]), (s) => [s.grants]],
    [new Chart(chartsBox, "Load granted per second", [{ label: "load/s" }]), (s) => [s.load]],
    [new Chart(chartsBox, "Waiting", [{ label: "waiters" }]), (s) => [s.waiting]],
    [new Chart(chartsBox, "Wait before grant", [{ label: "p50", unit: "ms" }, { label: "p99", unit: "ms" }]), (s) => [s.wait_p50_ms, s.wait_p99_ms]],
    [new Chart(chartsBox, "Rejections per second", [{ label: "rejections/s" }]), (s) => [s.rejections]],
  ];

  const view = {
    async refresh() {
      let d;
      try {
        d = await get(`/v1/dashboard/resources/${seg(rname)}`);
      } catch (e) {
        if (e instanceof ApiError && (e.status === 404 || e.status === 403)) {
          clear(limitsBox).append(h("p.field-error", { role: "alert", text: e.message }));
          return;
        }
        throw e;
      }
      last = d;
      clear(limitsBox).append(...namedLimits(d.limits, d.config).map((l) =>
        h("div.card", { "data-limit": l.kind },
          h("h3", { text: l.name }),
          h("p.big", {}, `${num(l.limit - l.remaining)} used of ${num(l.limit)}`),
          usageBar(l, `${l.name} used`),
          h("p.help", { text: `${num(l.remaining)} left now` }))));
      renderWhy(why, d);
      clear(queueBody);
      for (const lane of d.queue.lanes) {
        lane.priorities.forEach((p, i) => queueBody.append(h("tr", {},
          i === 0 ? h("th", { scope: "row", rowspan: String(lane.priorities.length), text: `${lane.lane} (${num(lane.waiting)})` }) : null,
          i === 0 ? h("td", { rowspan: String(lane.priorities.length), text: num(lane.weight) }) : null,
          h("td", { text: String(p.priority) }),
          h("td", { text: num(p.waiting) }),
          h("td", { text: dur(p.oldest_wait_ms) }))));
      }
      if (!d.queue.lanes.length) queueBody.append(h("tr", {}, h("td", { colspan: "5", text: "Nobody waits." })));
      clear(leasesBody).append(...d.leases.shown.map((l) => h("tr", {},
        h("td", { text: String(l.fencing_token) }),
        h("td", { text: l.holder ?? "–" }),
        everyLease ? h("td", { text: l.owner ?? "admin token" }) : null,
        h("td", { text: l.lane }),
        h("td", { text: num(l.load) }),
        h("td", { text: dur(l.age_ms) }),
        h("td", { text: dur(l.expires_in_ms) }))));
      const mine = d.leases.held - d.leases.others;
      if (!d.leases.shown.length) {
        leasesBody.append(h("tr", {}, h("td", { colspan: everyLease ? "7" : "6", text: everyLease ? "No lease held." : "This key holds no lease here." })));
      }
      const listed = mine > d.leases.shown.length
        ? `the ${d.leases.shown.length} expiring soonest are listed` : "";
      leasesNote.textContent = everyLease
        ? `${num(d.leases.held)} held${listed ? `; ${listed}` : ""}.`
        : `${num(d.leases.held)} held: ${num(mine)} by this key${listed ? ` (${listed})` : ""}, ${num(d.leases.others)} by other keys (not shown).`;
      if (d.series) {
        seriesNote.textContent = "One point per second. Waiting, wait times and rejections are known to the leader only: gaps are seconds before this leader took office.";
        const s = d.series;
        const n = s.grants.length;
        const end = s.end_unix_ms / 1000;
        const xs = Array.from({ length: n }, (_, i) => end - (n - 1 - i) * (s.step_ms / 1000));
        for (const [c, pick] of charts) c.set(xs, pick(s), end);
      } else {
        seriesNote.textContent = "No series for this resource: the node tracks at most 1 000 active resources.";
      }
    },
    unmount() {
      for (const [c] of charts) c.destroy();
    },
  };
  return view;
}

function renderWhy(el, d) {
  clear(el).append(h("h2#why-title", { text: "Why requests wait" }));
  const q = d.queue;
  if (!q.waiting) {
    el.append(h("p", { "data-binding": "none", text: "Nobody waits now." }));
    return;
  }
  const head = q.head;
  const text = q.binding
    ? `${num(q.waiting)} waiting. Binding limit: ${KIND[q.binding.kind]}; it has room for the next request in ${dur(q.binding.free_in_ms)} unless a holder releases first.`
    : `${num(q.waiting)} waiting. The next request fits now and is being granted.`;
  el.append(h("p.binding", { "data-binding": q.binding ? q.binding.kind : "fits" , text }));
  if (head) {
    el.append(h("p.help", { "data-estimate": String(head.estimated_wait_ms), text: `Next in line: lane ${head.lane}, priority ${head.priority}, load ${num(head.load)}, waiting for ${dur(head.waited_ms)}; estimated grant in ${dur(head.estimated_wait_ms)}. Nothing behind it is served first.` }));
  }
}
