// The cluster: every member's own view (role, term, indexes, storage, snapshot,
// readiness) gathered by the node that served the page, each follower's lag from the
// leader's view, and the membership changes (admin).
import { call, get, seg } from "./api.js";
import { bytes, h, num, replaceKeepingFocus } from "./dom.js";

export const name = "cluster";

export function mount(el, _params, ctx) {
  const admin = ctx.session.may.manage;
  const summary = h("p#cluster-summary", { "aria-live": "polite" });
  const tbody = h("tbody");
  const error = h("p#m-error.field-error", { role: "alert" });
  const inputs = {
    id: h("input#m-id", { type: "number", min: "1", required: true }),
    peer_addr: h("input#m-peer", { required: true, placeholder: "host:7701", autocomplete: "off" }),
    api_url: h("input#m-api", { required: true, placeholder: "http://host:7700", autocomplete: "off" }),
  };
  const voter = h("input#m-voter", { type: "checkbox", checked: true });
  const form = admin ? h("form.panel#member-form", { on: { submit: async (ev) => {
    ev.preventDefault();
    error.textContent = "Adding (the new member catches up first)…";
    try {
      await call("POST", "/v1/cluster/members", {
        id: Number(inputs.id.value), peer_addr: inputs.peer_addr.value.trim(),
        api_url: inputs.api_url.value.trim(), voter: voter.checked,
      });
      error.textContent = "";
      form.reset();
      view.refresh().catch(ctx.say);
    } catch (e) { error.textContent = e.message; }
  } } },
  h("h2", { text: "Add a member" }),
  h("p.help", { text: "Start the new node first (ratequeue serve, empty data dir, not in --peers); it joins as a learner, catches up, then votes." }),
  h("div.field", {}, h("label", { for: "m-id", text: "Node id" }), inputs.id),
  h("div.field", {}, h("label", { for: "m-peer", text: "Peer address" }), inputs.peer_addr),
  h("div.field", {}, h("label", { for: "m-api", text: "API URL" }), inputs.api_url),
  h("div.field.check", {}, voter, h("label", { for: "m-voter", text: "Voter (else learner)" })),
  error,
  h("button.primary", { type: "submit", text: "Add member" })) : null;

  el.append(
    h("h1", { text: "Cluster" }),
    summary,
    h("div.table-wrap", {}, h("table#members", {},
      h("caption.sr-only", { text: "Members, each as it sees itself" }),
      h("thead", {}, h("tr", {}, ["Node", "Role", "Ready", "Term", "Leader", "Last log", "Committed", "Applied", "Lag", "Storage", "Snapshot", "Leases", admin ? "" : null]
        .filter((t) => t !== null).map((t) => h("th", { scope: "col", text: t })))),
      tbody)),
    form,
  );

  const view = {
    async refresh() {
      const c = await get("/v1/dashboard/cluster");
      const leaderView = c.members.map((m) => m.status).find((s) => s && s.role === "leader");
      const lagOf = (id) => leaderView?.members.find((x) => x.id === id)?.lag;
      const leader = leaderView ? leaderView.id : null;
      summary.textContent = leader !== null
        ? `Leader: node ${leader}, term ${leaderView.term}. This page is served by node ${c.node_id}.`
        : `No leader is known right now. This page is served by node ${c.node_id}.`;
      summary.dataset.leader = leader === null ? "" : String(leader);
      replaceKeepingFocus(tbody, c.members.map((m) => {
        const s = m.status;
        return h("tr", { "data-member": String(m.id), "data-role": s ? s.role : "unreachable" },
          h("th", { scope: "row" }, `${m.id}${m.id === c.node_id ? " (this node)" : ""}`, h("br"), h("span.help", { text: m.api_url || "–" })),
          h("td", { text: s ? s.role + (m.voter ? "" : " (learner)") : "unreachable" }),
          h("td", { class: m.ready ? "ok" : "bad", text: m.ready ? "ready" : m.detail || "not ready" }),
          h("td", { text: s ? num(s.term) : "–" }),
          h("td", { text: s && s.leader_id !== null ? String(s.leader_id) : "–" }),
          h("td", { text: s ? num(s.last_log_index) : "–" }),
          h("td", { text: s ? num(s.committed_index) : "–" }),
          h("td", { text: s ? num(s.applied_index) : "–" }),
          h("td", { "data-col": "lag", text: leader === m.id ? "leader" : num(lagOf(m.id)) }),
          h("td", { text: s ? bytes(s.storage_bytes) : "–" }),
          h("td", { text: s && s.snapshot ? `index ${num(s.snapshot.index)} (term ${s.snapshot.term})` : "none yet" }),
          h("td", { text: s ? num(s.leases) : "–" }),
          admin ? h("td", {}, h("button.danger", { type: "button", text: "Remove", "aria-label": `Remove node ${m.id}`, on: { click: async () => {
            if (!confirm(`Remove node ${m.id} from the cluster?`)) return;
            try { await call("DELETE", `/v1/cluster/members/${seg(String(m.id))}`); view.refresh().catch(ctx.say); } catch (e) { ctx.say(e.message); }
          } } })) : null);
      }));
    },
  };
  return view;
}
