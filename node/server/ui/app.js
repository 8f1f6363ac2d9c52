// The dashboard's shell: sign-in, hash routing (#/resources, #/resources/NAME, #/keys,
// #/cluster), and one refresh loop that asks the current view for its one aggregated
// call per second (paused while the tab is hidden). The session (who the key is, what
// the server lets it do, the members' URLs) is re-read every 30 s; views show only what
// `session.may` allows, and the server refuses the rest anyway.
import { ApiError, call, get, key } from "./api.js";
import { clear, h } from "./dom.js";
import * as resources from "./resources.js";
import * as resource from "./resource.js";
import * as keys from "./keys.js";
import * as cluster from "./cluster.js";

const REFRESH_MS = 1000;
const SESSION_MS = 30_000;
const main = document.getElementById("main");
const nav = document.getElementById("nav");
const who = document.getElementById("who");
const banner = document.getElementById("banner");

let view = null;
let timer = null;
let generation = 0;
let session = null;
let sessionAt = 0;

/** `links`: [[text, href]] shown after the message. */
function say(message, links = []) {
  banner.hidden = !message;
  clear(banner);
  if (!message) return;
  banner.append(message);
  if (links.length) {
    banner.append(" ", ...links.flatMap(([text, href], i) => [i ? ", " : "", h("a", { href, text })]), ".");
  }
}

/** Every other member's dashboard, from the last session read (this node may be gone). */
function elsewhere() {
  if (!session) return [];
  return session.members
    .filter((m) => m.id !== session.node_id && m.api_url)
    .map((m) => [`node ${m.id}`, new URL("/ui/", m.api_url).href]);
}

/** Shown while a refresh fails; cleared by the next one that works. */
function trouble(e) {
  if (e instanceof ApiError && e.status === 401) {
    signOut("The key was refused (revoked or wrong). Sign in again.");
    return;
  }
  if (e instanceof ApiError && (e.code === "no_leader" || e.code === "shutting_down")) {
    say("No leader at the moment (election in progress). Retrying…");
  } else if (e instanceof ApiError && e.code === "unreachable") {
    const links = elsewhere();
    say(links.length
      ? "This node does not answer. Retrying… To keep watching, open the dashboard on another member (you sign in again there):"
      : "This node does not answer. Retrying…", links);
  } else {
    say(e.message || String(e));
  }
}

function signOut(message) {
  key.clear();
  session = null;
  location.hash = "#/signin";
  route(message);
}

function signIn(message) {
  nav.hidden = true;
  clear(who);
  const input = h("input#key", {
    type: "password", autocomplete: "off", required: true, spellcheck: "false",
    "aria-describedby": "key-help key-error",
  });
  const error = h("p#key-error.field-error", { role: "alert", text: message || "" });
  const form = h("form.signin", {
    on: {
      submit: async (ev) => {
        ev.preventDefault();
        const token = input.value.trim();
        if (!token) return;
        try {
          session = await call("GET", "/v1/dashboard/session", undefined, token);
          sessionAt = Date.now();
          key.set(token);
          location.hash = "#/resources";
          route();
        } catch (e) {
          error.textContent = e instanceof ApiError && e.status === 401
            ? "This key is not valid." : e.message;
          input.setAttribute("aria-invalid", "true");
          input.focus();
        }
      },
    },
  },
  h("h1", { text: "Sign in" }),
  h("label", { for: "key", text: "API key" }),
  input,
  h("p#key-help.help", { text: "An admin token or an API key. It is kept in this tab's session storage only and sent in the Authorization header, never in a URL." }),
  error,
  h("button", { type: "submit", text: "Sign in" }));
  clear(main).append(form);
  input.focus();
}

function showSession() {
  nav.hidden = false;
  for (const a of nav.querySelectorAll("[data-may]")) a.hidden = !session.may[a.dataset.may];
  clear(who).append(
    h("span", { text: `${session.name} (${session.role})` }),
    h("button.link", { type: "button", text: "Sign out", on: { click: () => signOut() } }),
  );
}

function parse(hash) {
  const parts = hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  if (parts[0] === "resources" && parts[1]) return [resource, { name: parts[1] }];
  if (parts[0] === "keys") return [keys, {}];
  if (parts[0] === "cluster") return [cluster, {}];
  return [resources, {}];
}

async function refresh(gen) {
  if (gen !== generation || !view) return;
  if (!document.hidden) {
    try {
      if (Date.now() - sessionAt > SESSION_MS) {
        const was = JSON.stringify(session.may);
        session = await get("/v1/dashboard/session");
        sessionAt = Date.now();
        // The key's permissions changed (rotated into another scope): rebuild the view.
        if (JSON.stringify(session.may) !== was && gen === generation) {
          route();
          return;
        }
      }
      await view.refresh();
      if (gen === generation) say("");
    } catch (e) {
      if (gen === generation) trouble(e);
    }
  }
  if (gen === generation) timer = setTimeout(() => refresh(gen), REFRESH_MS);
}

export async function route(message) {
  generation += 1;
  const gen = generation;
  clearTimeout(timer);
  if (view) view.unmount?.();
  view = null;
  say("");
  if (!key.get()) {
    signIn(message);
    return;
  }
  if (!session) {
    try {
      session = await get("/v1/dashboard/session");
      sessionAt = Date.now();
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) {
        key.clear();
        signIn("The key was refused (revoked or wrong). Sign in again.");
      } else {
        trouble(e);
        timer = setTimeout(() => route(), REFRESH_MS);
      }
      return;
    }
  }
  if (gen !== generation) return;
  showSession();
  const [mod, params] = parse(location.hash);
  for (const a of nav.querySelectorAll("a")) {
    if (a.dataset.view === mod.name) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  clear(main);
  view = mod.mount(main, params, { session, say, navigate: (h) => { location.hash = h; } });
  const heading = main.querySelector("h1");
  if (heading) {
    heading.tabIndex = -1;
    heading.focus({ preventScroll: true });
  }
  refresh(gen);
}

window.addEventListener("hashchange", () => route());
document.addEventListener("visibilitychange", () => {
  if (!document.hidden && view) {
    clearTimeout(timer);
    refresh(generation);
  }
});
route();
