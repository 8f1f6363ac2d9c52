// API keys (admin): the list with each key's scope (never a secret), create with a
// role, resource and lane patterns, highest priority, quotas and expiry (the secret is
// shown once, here), rotate (a new secret, shown once), revoke. The API validates every
// field; its message is shown under the form.
import { ApiError, call, get, seg } from "./api.js";
import { clear, dur, h, num, replaceKeepingFocus } from "./dom.js";

export const name = "keys";

const ROLES = [
  ["client", "client (acquire on its resources)"],
  ["monitor", "monitor (read-only: every resource and the cluster)"],
  ["admin", "admin (everything)"],
];

const patterns = (input) => input.value.split(",").map((p) => p.trim()).filter(Boolean);

export function mount(el, _params, ctx) {
  const tbody = h("tbody");
  const created = h("div#created", { "aria-live": "polite" });
  const nameIn = h("input#k-name", { required: true, autocomplete: "off", "aria-describedby": "k-error" });
  const roleIn = h("select#k-role", {}, ROLES.map(([v, t]) => h("option", { value: v, text: t })));
  const patIn = h("input#k-resources", { autocomplete: "off", placeholder: "openai-*, exports", "aria-describedby": "k-help k-error" });
  const laneIn = h("input#k-lanes", { autocomplete: "off", placeholder: "every lane", "aria-describedby": "k-lanes-help k-error" });
  const prioIn = h("input#k-priority", { type: "number", placeholder: "any", "aria-describedby": "k-error" });
  const waitIn = h("input#k-waiters", { type: "number", min: "1", placeholder: "1000", "aria-describedby": "k-error" });
  const flightIn = h("input#k-in-flight", { type: "number", min: "1", placeholder: "2000", "aria-describedby": "k-error" });
  const hoursIn = h("input#k-expires", { type: "number", min: "1", placeholder: "never", "aria-describedby": "k-error" });
  const error = h("p#k-error.field-error", { role: "alert" });

  const showSecret = (k, what) => {
    const secret = h("code#secret", { text: k.key });
    clear(created).append(h("div.secret", { role: "alert" },
      h("p", {}, h("strong", { text: `Key ${k.name} ${what}. ` }), "Copy it now: it is shown only this once and cannot be read back."),
      secret,
      h("button", { type: "button", text: "Copy", on: { click: () => {
        // The clipboard API needs a secure origin; elsewhere select the text to copy.
        if (navigator.clipboard && window.isSecureContext) navigator.clipboard.writeText(k.key);
        else getSelection().selectAllChildren(secret);
      } } }),
      h("button.link", { type: "button", text: "Done", on: { click: () => clear(created) } })));
  };

  const form = h("form.panel#key-form", { on: { submit: async (ev) => {
    ev.preventDefault();
    error.textContent = "";
    nameIn.removeAttribute("aria-invalid");
    const body = { name: nameIn.value.trim(), role: roleIn.value, resources: patterns(patIn), lanes: patterns(laneIn) };
    if (prioIn.value !== "") body.max_priority = Number(prioIn.value);
    if (waitIn.value !== "") body.max_waiters = Number(waitIn.value);
    if (flightIn.value !== "") body.max_in_flight = Number(flightIn.value);
    if (hoursIn.value !== "") body.expires_in_ms = Math.round(Number(hoursIn.value) * 3_600_000);
    try {
      const k = await call("POST", "/v1/keys", body);
      form.reset();
      showSecret(k, "created");
      view.refresh().catch(ctx.say);
    } catch (e) {
      error.textContent = e.message;
      if (e instanceof ApiError && /name/.test(e.message)) nameIn.setAttribute("aria-invalid", "true");
    }
  } } },
  h("h2", { text: "Create a key" }),
  h("div.field", {}, h("label", { for: "k-name", text: "Name" }), nameIn),
  h("div.field", {}, h("label", { for: "k-role", text: "Role" }), roleIn),
  h("div.field", {}, h("label", { for: "k-resources", text: "Resources (comma-separated patterns)" }), patIn,
    h("p#k-help.help", { text: "Glob patterns: * any run, ? one character. A client key may see and use only the resources they match (none if empty)." })),
  h("div.field", {}, h("label", { for: "k-lanes", text: "Lanes (comma-separated patterns)" }), laneIn,
    h("p#k-lanes-help.help", { text: "The lanes a client key may queue in; empty: every lane." })),
  h("div.field", {}, h("label", { for: "k-priority", text: "Highest priority (empty: any)" }), prioIn),
  h("div.field", {}, h("label", { for: "k-waiters", text: "Waiters at once (default 1000)" }), waitIn),
  h("div.field", {}, h("label", { for: "k-in-flight", text: "Requests in flight per node (default 2000)" }), flightIn),
  h("div.field", {}, h("label", { for: "k-expires", text: "Expires in (hours; empty: never)" }), hoursIn),
  error,
  h("button.primary", { type: "submit", text: "Create key" }));

  el.append(
    h("h1", { text: "API keys" }),
    created,
    h("div.table-wrap", {}, h("table#keys", {},
      h("thead", {}, h("tr", {}, ["Name", "Role", "Resources", "Lanes", "Highest priority", "Waiters / in flight", "Expires in", ""]
        .map((t) => h("th", { scope: "col", text: t })))),
      tbody)),
    form,
  );

  const view = {
    async refresh() {
      let list;
      try {
        list = await get("/v1/keys");
      } catch (e) {
        if (e instanceof ApiError && e.status === 403) {
          clear(tbody).append(h("tr", {}, h("td", { colspan: "8", text: "Only admins manage keys." })));
          form.hidden = true;
          return;
        }
        throw e;
      }
      replaceKeepingFocus(tbody, list.keys.map((k) => h("tr", { "data-key": k.name },
        h("th", { scope: "row", text: k.name }),
        h("td", { text: k.role }),
        h("td", { text: k.role === "client" ? k.resources.join(", ") || "none" : "all" }),
        h("td", { text: k.role === "client" ? k.lanes.join(", ") || "all" : "–" }),
        h("td", { text: k.role === "client" ? (k.max_priority ?? "any") : "–" }),
        h("td", { text: `${num(k.max_waiters)} / ${num(k.max_in_flight)}` }),
        h("td", { text: k.expires_in_ms === null ? "never" : k.expires_in_ms === 0 ? "expired" : dur(k.expires_in_ms) }),
        h("td", {}, h("div.actions", {},
          h("button", { type: "button", text: "Rotate", "aria-label": `Rotate key ${k.name}`, on: { click: async () => {
            if (!confirm(`Rotate key ${k.name}? Its current secret stops working at once.`)) return;
            try {
              showSecret(await call("POST", `/v1/keys/${seg(k.name)}/rotate`, {}), "rotated");
              view.refresh().catch(ctx.say);
            } catch (e) { ctx.say(e.message); }
          } } }),
          h("button.danger", { type: "button", text: "Revoke", "aria-label": `Revoke key ${k.name}`, on: { click: async () => {
            if (!confirm(`Revoke key ${k.name}? Its clients are refused from now on.`)) return;
            try {
              await call("DELETE", `/v1/keys/${seg(k.name)}`);
              view.refresh().catch(ctx.say);
            } catch (e) { ctx.say(e.message); }
          } } }))))));
      if (!list.keys.length) tbody.append(h("tr", {}, h("td", { colspan: "8", text: "No keys yet (the admin token is not listed)." })));
    },
  };
  return view;
}
