// A real 3-node cluster for the browser tests, through the test-cluster CLI
// (`ratequeue dev --ephemeral --json`, docs/testkit.md), and a small API client that
// follows 307s by hand the way the SDKs do (Authorization kept, unlike fetch).
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";

export async function startCluster(bin) {
  const dev = spawn(bin, ["dev", "--ephemeral", "--json"], { stdio: ["pipe", "pipe", "inherit"] });
  const lines = createInterface({ input: dev.stdout })[Symbol.asyncIterator]();
  const next = async () => {
    const { value, done } = await lines.next();
    if (done) throw new Error("ratequeue dev --ephemeral exited");
    return JSON.parse(value);
  };
  const first = await next();
  if (!first.ok) throw new Error(`cluster did not start: ${first.error}`);
  let queue = Promise.resolve();
  const command = (line) => {
    const run = queue.then(async () => {
      dev.stdin.write(`${line}\n`);
      const answer = await next();
      if (!answer.ok) throw new Error(`${line}: ${answer.error}`);
      return answer;
    });
    queue = run.catch(() => {});
    return run;
  };
  return {
    nodes: first.nodes,
    token: first.admin_token,
    leaderId: first.leader_id,
    url: (id) => first.nodes.find((n) => n.id === id).api_url,
    command,
    async stop() {
      dev.stdin.end();
      await new Promise((resolve) => dev.once("exit", resolve));
    },
  };
}

/** One API call that follows 307s by hand (method, body and token kept). */
export async function api(base, method, path, { token, body } = {}) {
  let url = `${base}${path}`;
  for (let i = 0; i < 5; i++) {
    const headers = {};
    if (token) headers.authorization = `Bearer ${token}`;
    if (body !== undefined) headers["content-type"] = "application/json";
    const r = await fetch(url, {
      method, headers, redirect: "manual",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (r.status === 307) {
      url = r.headers.get("location");
      continue;
    }
    const text = await r.text();
    let json = null;
    try { json = text ? JSON.parse(text) : null; } catch { json = text; }
    return { status: r.status, body: json };
  }
  throw new Error(`redirect loop for ${path}`);
}

/** Polls `f` until it returns a truthy value, or fails after `ms`. Never a fixed sleep. */
export async function eventually(what, f, ms = 30_000) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const v = await f();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ""}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Polling assertions on Playwright locators (playwright-core has no `expect`): each
 * re-reads the page until the condition holds or its deadline passes.
 */
export function expect(locator) {
  const make = (negate) => {
    const check = async (what, cond, opts = {}) => {
      const ms = opts.timeout ?? 30_000;
      try {
        await eventually(what, async () => (await cond()) !== negate, ms);
      } catch (e) {
        const text = await locator.first().textContent({ timeout: 1000 }).catch(() => "(none)");
        throw new Error(`${negate ? "not " : ""}${what} (${locator}): ${e.message}; text: ${text}`);
      }
    };
    const text = async () => (await locator.first().textContent({ timeout: 1000 })) ?? "";
    const matches = (t, want) => (want instanceof RegExp ? want.test(t) : t === want);
    return {
      toBeVisible: (o) => check("visible", () => locator.first().isVisible(), o),
      toBeHidden: (o) => check("hidden", () => locator.first().isHidden(), o),
      toHaveCount: (n, o) => check(`count ${n}`, async () => (await locator.count()) === n, o),
      toHaveText: (want, o) => check(`text ${want}`, async () => matches((await text()).trim(), want), o),
      toContainText: (want, o) => check(`text containing ${want}`, async () => {
        const t = await text();
        return want instanceof RegExp ? want.test(t) : t.includes(want);
      }, o),
      toHaveAttribute: (name, want, o) => check(`${name}=${want}`, async () =>
        matches((await locator.first().getAttribute(name, { timeout: 1000 })) ?? "", want), o),
    };
  };
  const positive = make(false);
  positive.not = make(true);
  return positive;
}
