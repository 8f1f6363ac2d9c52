// API keys (admin): the list (never a secret), create with a role and resource
// patterns (the secret is shown once, here), revoke.
import { ApiError, call, get, seg } from "./api.js";
import { clear, h } from "./dom.js";

export const name = "keys";

export function mount(el, _params, ctx) {
  const tbody = h("tbody");
  const created = h("div#created", { "aria-live": "polite" });
  const nameIn = h("input#k-name", { required: true, autocomplete: "off", "aria-describedby": "k-error" });
  const roleIn = h("select#k-role", {}, h("option", { value: "client", text: "client (acquire on its resources)" }), h("option", { value: "admin", text: "admin (everything)" }));
  const patIn = h("input#k-resources", { autocomplete: "off", placeholder: "openai-*, exports", "aria-describedby": "k-help k-error" });
  const error = h("p#k-error.field-error", { role: "alert" });
  const form = h("form.panel#key-form", { on: { submit: async (ev) => {
    ev.preventDefault();
    error.textContent = "";
    const body = {
      name: nameIn.value.trim(),
      role: roleIn.value,
      resources: patIn.value.split(",").map((p) => p.trim()).filter(Boolean),
    };
    try {
      const k = await call("POST", "/v1/keys", body);
      form.reset();
      const secret = h("code#secret", { text: k.key });
      clear(created).append(h("div.secret", { role: "alert" },
        h("p", {}, h("strong", { text: `Key ${k.name} created. ` }), "Copy it now: it is shown only this once and cannot be read back."),
        secret,
        h("button", { type: "button", text: "Copy", on: { click: () => {
          // The clipboard API needs a secure origin; elsewhere select the text to copy.
          if (navigator.clipboard && window.isSecureContext) navigator.clipboard.writeText(k.key);
          else getSelection().selectAllChildren(secret);
        } } }),
        h("button.link", { type: "button", text: "Done", on: { click: () => clear(created) } })));
      view.refresh().catch(ctx.say);
    } catch (e) {
      error.textContent = e.message;
      nameIn.setAttribute("aria-invalid", "true");
    }
  } } },
  h("h2", { text: "Create a key" }),
  h("div.field", {}, h("label", { for: "k-name", text: "Name" }), nameIn),
  h("div.field", {}, h("label", { for: "k-role", text: "Role" }), roleIn),
  h("div.field", {}, h("label", { for: "k-resources", text: "Resources (comma-separated patterns)" }), patIn,
    h("p#k-help.help", { text: "Glob patterns: * any run, ? one character. A client key may use only the resources they match." })),
  error,
  h("button.primary", { type: "submit", text: "Create key" }));

  el.append(
    h("h1", { text: "API keys" }),
    created,
    h("div.table-wrap", {}, h("table#keys", {},
      h("thead", {}, h("tr", {}, ["Name", "Role", "Resources", ""].map((t) => h("th", { scope: "col", text: t })))),
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
          clear(tbody).append(h("tr", {}, h("td", { colspan: "4", text: "Only admins manage keys." })));
          form.hidden = true;
          return;
        }
        throw e;
      }
      clear(tbody).append(...list.keys.map((k) => h("tr", { "data-key": k.name },
        h("th", { scope: "row", text: k.name }),
        h("td", { text: k.role }),
        h("td", { text: k.role === "admin" ? "all" : k.resources.join(", ") || "none" }),
        h("td", {}, h("button.danger", { type: "button", text: "Revoke", "aria-label": `Revoke key ${k.name}`, on: { click: async () => {
          if (!confirm(`Revoke key ${k.name}? Its clients are refused from now on.`)) return;
          try {
            await call("DELETE", `/v1/keys/${seg(k.name)}`);
            view.refresh().catch(ctx.say);
          } catch (e) { ctx.say(e.message); }
        } } })))));
      if (!list.keys.length) tbody.append(h("tr", {}, h("td", { colspan: "4", text: "No keys yet (the admin token is not listed)." })));
    },
  };
  return view;
}
