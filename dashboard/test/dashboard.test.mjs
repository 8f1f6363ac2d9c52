// The dashboard in a real headless Chromium (Debian's `chromium`, driven by
// playwright-core) against a real 3-node cluster: sign in, create a resource (the API's
// validation error next to the field first), watch a waiter appear and leave while a
// client holds and releases the slot, the binding limit named, a limit edited and in
// effect, a key created and revoked and its client refused, the leader killed and the
// page following the new leader (and a page whose own node died pointing at the other
// members), scoped, monitor and empty keys seeing exactly their scope, 10 000 resources
// paginated, every view shown (also at phone width) checked for accessibility
// (support/a11y.mjs). Waits are Playwright's
// auto-waiting assertions and `eventually` polls, each with a deadline; no fixed sleeps.
//
// RATEQUEUE_BIN: the ratequeue binary (default ../target/debug/ratequeue).
// RATEQUEUE_SCREENSHOTS: a directory to write the screenshots to (docs/dashboard/).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { accessibilityProblems, keyboardProblems } from "../support/a11y.mjs";
import { api, expect, startCluster } from "../support/cluster.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const bin = process.env.RATEQUEUE_BIN || resolve(here, "../../target/debug/ratequeue");
const shots = process.env.RATEQUEUE_SCREENSHOTS;
const TIMEOUT = 30_000;

let cluster;
let browser;
let profile;
let follower;
const consoleErrors = [];

// Every view the test shows is checked for accessibility (support/a11y.mjs: labels and
// names, headings, AA contrast, no sideways scrolling) and, with RATEQUEUE_SCREENSHOTS,
// photographed.
async function shot(page, name) {
  assert.deepEqual(await accessibilityProblems(page), [], `accessibility of the ${name} view`);
  if (!shots) return;
  mkdirSync(shots, { recursive: true });
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
}

// Tab from the top of the page: the skip link first, every control reached shows its
// focus ring, and the view's own controls (`reach`, by the order's text) are reachable.
async function keyboard(page, name, reach) {
  const { problems, order } = await keyboardProblems(page, 30);
  assert.deepEqual(problems, [], `keyboard use of the ${name} view`);
  assert.equal(order[0], 'a "Skip to content"', `the ${name} view's first Tab stop: ${order}`);
  for (const r of reach) assert.ok(order.some((o) => o.startsWith(r)), `${r} reached by Tab in the ${name} view: ${order}`);
}

async function newPage(base, viewport = { width: 1280, height: 900 }) {
  const page = await browser.newPage();
  await page.setViewportSize(viewport);
  page.on("console", (m) => {
    // A refused fetch shows as "Failed to load resource: 4xx/5xx": those are expected
    // answers (validation errors, revoked keys, elections) the page handles.
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) consoleErrors.push(m.text());
  });
  page.on("pageerror", (e) => consoleErrors.push(String(e)));
  await page.goto(`${base}/ui/`);
  return page;
}

async function signIn(page, token) {
  await page.getByLabel("API key").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Resources", level: 1 }).waitFor({ timeout: TIMEOUT });
}

before(async () => {
  cluster = await startCluster(bin);
  follower = cluster.nodes.map((n) => n.id).find((id) => id !== cluster.leaderId);
  profile = mkdtempSync(join(tmpdir(), "rq-chromium-"));
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
});

after(async () => {
  await browser?.close();
  await cluster?.stop();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

test("sign in, resources, waiters and the binding limit, edits, keys, failover", { timeout: 600_000 }, async () => {
  const token = cluster.token;
  const leaderUrl = () => cluster.url(cluster.leaderId);
  // The page is served by a follower: its leader-only calls are forwarded by that node.
  const page = await newPage(cluster.url(follower));
  await expect(page.getByRole("heading", { name: "Sign in" })).toBeVisible();
  await shot(page, "signin");
  await keyboard(page, "sign-in", ["input#key", 'button "Sign in"']);
  await page.getByLabel("API key").fill("wrong-key-123");
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.locator("#key-error")).toHaveText("This key is not valid.");
  await signIn(page, token);
  assert.equal(await page.evaluate(() => sessionStorage.getItem("ratequeue.key")), token);
  assert.ok(!page.url().includes(token), "the key is never in the URL");

  // Create a resource; the API's own validation error shows next to the field.
  await page.getByRole("button", { name: "New resource" }).click();
  await page.getByLabel("Name", { exact: true }).fill("gpt");
  await page.getByLabel(/^Concurrency/).fill("0");
  await page.getByRole("button", { name: "Create" }).click();
  await expect(page.locator("#err-concurrency")).toContainText("concurrency must be in 1..=");
  await expect(page.getByLabel(/^Concurrency/)).toHaveAttribute("aria-invalid", "true");
  assert.deepEqual(await accessibilityProblems(page), [], "accessibility of the form showing an error");
  await page.getByLabel(/^Concurrency/).fill("1");
  await page.getByRole("button", { name: "Add a rate limit" }).click();
  await page.getByLabel("Limit", { exact: true }).fill("1000");
  await page.getByRole("button", { name: "Create" }).click();
  const row = page.locator('tr[data-resource="gpt"]');
  await expect(row).toBeVisible({ timeout: TIMEOUT });
  await expect(row.locator('[data-col="held"]')).toContainText("0 / 1");

  // A client holds the slot; a second one waits.
  const held = await api(leaderUrl(), "POST", "/v1/resources/gpt/acquire", {
    token, body: { holder: "billing-worker-1", ttl_ms: 120_000 },
  });
  assert.equal(held.status, 200, JSON.stringify(held.body));
  const waiting = api(leaderUrl(), "POST", "/v1/resources/gpt/acquire", {
    token, body: { wait_ms: 120_000, lane: "batch", priority: 5, holder: "nightly-export" },
  });
  await expect(row.locator('[data-col="waiting"]')).toContainText("1 (batch: 1)", { timeout: TIMEOUT });
  await shot(page, "resources");
  await keyboard(page, "resources", ['button "New resource"', "input#filter", 'button "Grants/s"']);
  // The rows are rebuilt every second: a keyboard user on a row's link keeps the focus.
  await row.getByRole("link", { name: "gpt" }).evaluate((a) => { a.focus(); a.dataset.before = "1"; });
  const listed = (r) => r.url().includes("/v1/dashboard/resources?");
  await page.waitForResponse(listed, { timeout: TIMEOUT });
  await page.waitForResponse(listed, { timeout: TIMEOUT }); // the previous one is rendered by now
  assert.deepEqual(await page.evaluate(() => {
    const a = document.activeElement;
    return [a.tagName, a.textContent, a.closest("tr")?.dataset.resource, a.dataset.before ?? "rebuilt"];
  }), ["A", "gpt", "gpt", "rebuilt"], "focus stays on the rebuilt row's link");

  await row.getByRole("link", { name: "gpt" }).click();
  await expect(page.getByRole("heading", { name: "gpt", level: 1 })).toBeVisible();
  await expect(page.locator("#why .binding")).toHaveAttribute("data-binding", "concurrency", { timeout: TIMEOUT });
  await expect(page.locator("#why .binding")).toContainText("Binding limit: the concurrency limit");
  await expect(page.locator("#why [data-estimate]")).toContainText("estimated grant in");
  await expect(page.locator("#queue tbody")).toContainText("batch (1)");
  await expect(page.locator("#leases tbody")).toContainText("billing-worker-1");
  await expect(page.locator('[data-chart="Waiting"] .sr-only')).toContainText("waiters: 1", { timeout: TIMEOUT });
  await shot(page, "resource");
  await keyboard(page, "resource", ['button "Edit limits"', 'button "Delete"']);

  // The holder releases: the waiter is granted and leaves the queue.
  const rel = await api(leaderUrl(), "POST", `/v1/leases/${held.body.lease_id}/release`, { token, body: {} });
  assert.equal(rel.status, 200);
  const granted = await waiting;
  assert.equal(granted.status, 200, JSON.stringify(granted.body));
  await expect(page.locator("#why [data-binding]")).toHaveAttribute("data-binding", "none", { timeout: TIMEOUT });
  await expect(page.locator("#queue tbody")).toContainText("Nobody waits.");
  await expect(page.locator("#leases tbody")).toContainText("nightly-export");
  await expect(page.locator('[data-chart="Grants per second"] .sr-only')).toContainText("grants/s", { timeout: TIMEOUT });

  // Edit the limit to 2 slots and see it take effect: a second holder fits at once.
  await page.getByRole("button", { name: "Edit limits" }).click();
  await page.getByLabel(/^Concurrency/).fill("2");
  await page.getByRole("button", { name: "Save" }).click();
  await expect(page.locator('[data-limit="concurrency"]')).toContainText("1 used of 2", { timeout: TIMEOUT });
  const second = await api(leaderUrl(), "POST", "/v1/resources/gpt/acquire", { token, body: { wait_ms: 0 } });
  assert.equal(second.status, 200, `the new limit is in effect: ${JSON.stringify(second.body)}`);
  await expect(page.locator('[data-limit="concurrency"]')).toContainText("2 used of 2", { timeout: TIMEOUT });
  const third = await api(leaderUrl(), "POST", "/v1/resources/gpt/acquire", { token, body: { wait_ms: 0 } });
  assert.equal(third.status, 429, "and it binds at 2");
  for (const l of [granted.body, second.body]) {
    await api(leaderUrl(), "POST", `/v1/leases/${l.lease_id}/release`, { token, body: {} });
  }

  // Keys: create a client key (the secret shown once), use it, revoke it, refused.
  await page.getByRole("link", { name: "API keys" }).click();
  await expect(page.getByRole("heading", { name: "API keys" })).toBeVisible();
  await page.getByLabel("Name", { exact: true }).fill("worker");
  await page.getByLabel(/^Resources/).fill("gpt");
  await page.getByRole("button", { name: "Create key" }).click();
  const secret = (await page.locator("#secret").textContent({ timeout: TIMEOUT })).trim();
  assert.match(secret, /^rq_/);
  await expect(page.locator('tr[data-key="worker"]')).toContainText("gpt");
  await shot(page, "keys");
  await page.getByRole("button", { name: "Done" }).click();
  await expect(page.locator("#secret")).toHaveCount(0);
  await page.reload();
  await expect(page.locator('tr[data-key="worker"]')).toBeVisible({ timeout: TIMEOUT });
  assert.ok(!(await page.content()).includes(secret), "the secret is never shown again");
  const use = await api(leaderUrl(), "POST", "/v1/resources/gpt/acquire", { token: secret, body: { wait_ms: 0 } });
  assert.equal(use.status, 200, JSON.stringify(use.body));
  page.once("dialog", (d) => d.accept());
  await page.getByRole("button", { name: "Revoke key worker" }).click();
  await expect(page.locator('tr[data-key="worker"]')).toHaveCount(0, { timeout: TIMEOUT });
  const refused = await api(leaderUrl(), "POST", "/v1/resources/gpt/acquire", { token: secret, body: { wait_ms: 0 } });
  assert.equal(refused.status, 401, "the revoked key's client is refused");

  // A scoped client key, created in the form with lanes and a highest priority.
  await api(leaderUrl(), "PUT", "/v1/resources/other", { token, body: { concurrency: 1 } });
  await page.getByLabel("Name", { exact: true }).fill("gpt-team");
  await page.getByLabel(/^Resources/).fill("gpt*");
  await page.getByLabel(/^Lanes/).fill("batch*");
  await page.getByLabel(/^Highest priority/).fill("5");
  await page.getByRole("button", { name: "Create key" }).click();
  const teamKey = (await page.locator("#secret").textContent({ timeout: TIMEOUT })).trim();
  await page.getByRole("button", { name: "Done" }).click();
  const teamRow = page.locator('tr[data-key="gpt-team"]');
  await expect(teamRow).toContainText("batch*", { timeout: TIMEOUT });
  await expect(teamRow).toContainText("gpt*");
  const monitorKey = (await api(leaderUrl(), "POST", "/v1/keys", { token, body: { name: "watch", role: "monitor" } })).body.key;
  const noneKey = (await api(leaderUrl(), "POST", "/v1/keys", { token, body: { name: "nothing", role: "client" } })).body.key;
  const teamLease = await api(leaderUrl(), "POST", "/v1/resources/gpt/acquire", {
    token: teamKey, body: { lane: "batch-1", priority: 5, holder: "team-worker", ttl_ms: 120_000 },
  });
  assert.equal(teamLease.status, 200, JSON.stringify(teamLease.body));
  const adminLease = await api(leaderUrl(), "POST", "/v1/resources/gpt/acquire", {
    token, body: { holder: "admin-job", ttl_ms: 120_000 },
  });
  assert.equal(adminLease.status, 200, JSON.stringify(adminLease.body));

  // It sees its scope and nothing else: its resources, its own leases, no management,
  // no cluster view; what it may not see is refused by the server.
  const scopedPage = await newPage(cluster.url(follower));
  await signIn(scopedPage, teamKey);
  await expect(scopedPage.locator("#scope")).toContainText("in lanes batch*, at priority at most 5");
  await expect(scopedPage.locator('tr[data-resource="gpt"]')).toBeVisible({ timeout: TIMEOUT });
  await expect(scopedPage.locator('tr[data-resource="other"]')).toHaveCount(0);
  await expect(scopedPage.getByRole("link", { name: "API keys" })).toBeHidden();
  await expect(scopedPage.getByRole("link", { name: "Cluster" })).toBeHidden();
  await expect(scopedPage.getByRole("button", { name: "New resource" })).toHaveCount(0);
  await scopedPage.goto(`${cluster.url(follower)}/ui/#/resources/gpt`);
  await expect(scopedPage.locator("#leases tbody")).toContainText("team-worker", { timeout: TIMEOUT });
  await expect(scopedPage.locator("#leases tbody")).not.toContainText("admin-job");
  await expect(scopedPage.locator("#leases-note")).toContainText("1 by this key");
  await expect(scopedPage.locator("#leases-note")).toContainText("1 by other keys (not shown)");
  await expect(scopedPage.getByRole("button", { name: "Edit limits" })).toHaveCount(0);
  await expect(scopedPage.getByRole("button", { name: "Delete" })).toHaveCount(0);
  await shot(scopedPage, "resource-client-key");
  await scopedPage.goto(`${cluster.url(follower)}/ui/#/resources/other`);
  await expect(scopedPage.locator("#limits")).toContainText('may not use resource "other"', { timeout: TIMEOUT });
  await scopedPage.goto(`${cluster.url(follower)}/ui/#/cluster`);
  await expect(scopedPage.locator("#banner")).toContainText("may not read the cluster", { timeout: TIMEOUT });
  await scopedPage.close();

  // A monitor key reads everything (every lease with its key) and changes nothing.
  const monitorPage = await newPage(cluster.url(follower));
  await signIn(monitorPage, monitorKey);
  await expect(monitorPage.locator("#scope")).toContainText("read-only (monitor)");
  await expect(monitorPage.locator('tr[data-resource="other"]')).toBeVisible({ timeout: TIMEOUT });
  await expect(monitorPage.locator('tr[data-resource="gpt"]')).toBeVisible();
  await expect(monitorPage.getByRole("link", { name: "Cluster" })).toBeVisible();
  await expect(monitorPage.getByRole("link", { name: "API keys" })).toBeHidden();
  await expect(monitorPage.getByRole("button", { name: "New resource" })).toHaveCount(0);
  await monitorPage.goto(`${cluster.url(follower)}/ui/#/resources/gpt`);
  await expect(monitorPage.locator("#leases tbody")).toContainText("admin-job", { timeout: TIMEOUT });
  await expect(monitorPage.locator("#leases tbody")).toContainText("team-worker");
  await expect(monitorPage.locator("#leases tbody")).toContainText("gpt-team");
  await expect(monitorPage.getByRole("button", { name: "Edit limits" })).toHaveCount(0);
  await monitorPage.close();

  // A key allowed on nothing sees nothing.
  const nonePage = await newPage(cluster.url(follower));
  await signIn(nonePage, noneKey);
  await expect(nonePage.locator("#resources tbody")).toContainText("This key may see no resource.", { timeout: TIMEOUT });
  await expect(nonePage.locator("#resources tbody tr")).toHaveCount(1);
  await expect(nonePage.getByRole("link", { name: "Cluster" })).toBeHidden();
  await nonePage.close();
  for (const l of [teamLease.body, adminLease.body]) {
    const r = await api(leaderUrl(), "POST", `/v1/leases/${l.lease_id}/release`, { token, body: {} });
    assert.equal(r.status, 200, JSON.stringify(r.body));
  }

  // Cluster view, then kill the leader: the page (served by a follower) follows the
  // new leader, and the resources view keeps working through it.
  await page.getByRole("link", { name: "Cluster" }).click();
  const summary = page.locator("#cluster-summary");
  await expect(summary).toHaveAttribute("data-leader", String(cluster.leaderId), { timeout: TIMEOUT });
  await expect(page.locator(`tr[data-member="${cluster.leaderId}"]`)).toContainText("leader");
  await shot(page, "cluster");
  const old = cluster.leaderId;
  // A second page, served by the leader itself: when its node dies it can only point
  // at the other members (the key is per origin, so the user signs in again there).
  const orphan = await newPage(cluster.url(old));
  await signIn(orphan, token);
  await expect(orphan.locator('tr[data-resource="gpt"]')).toBeVisible({ timeout: TIMEOUT });
  await cluster.command(`kill ${old}`);
  await expect(orphan.locator("#banner")).toContainText("open the dashboard on another member", { timeout: TIMEOUT });
  const hrefs = await orphan.locator("#banner a").evaluateAll((as) => as.map((a) => a.href));
  const others = cluster.nodes.filter((n) => n.id !== old).map((n) => `${cluster.url(n.id)}/ui/`);
  assert.deepEqual(hrefs.sort(), others.sort(), "the banner links every other member's dashboard");
  await shot(orphan, "node-gone");
  await orphan.close();
  await expect(page.locator(`tr[data-member="${old}"]`)).toHaveAttribute("data-role", "unreachable", { timeout: TIMEOUT });
  await expect(summary).not.toHaveAttribute("data-leader", String(old), { timeout: 60_000 });
  await expect(summary).not.toHaveAttribute("data-leader", "", { timeout: 60_000 });
  const newLeader = Number(await summary.getAttribute("data-leader"));
  assert.notEqual(newLeader, old);
  cluster.leaderId = newLeader;
  await page.getByRole("link", { name: "Resources" }).click();
  await expect(page.locator('tr[data-resource="gpt"]')).toBeVisible({ timeout: 60_000 });
  // A write from the page reaches the new leader.
  await page.locator('tr[data-resource="gpt"]').getByRole("link", { name: "gpt" }).click();
  await page.getByRole("button", { name: "Edit limits" }).click();
  await page.getByLabel(/^Concurrency/).fill("3");
  await page.getByRole("button", { name: "Save" }).click();
  await expect(page.locator('[data-limit="concurrency"]')).toContainText("of 3", { timeout: 60_000 });

  // Delete a resource from its view.
  await page.goto(`${cluster.url(follower)}/ui/#/resources/other`);
  await expect(page.getByRole("heading", { name: "other", level: 1 })).toBeVisible();
  await expect(page.locator('[data-limit="concurrency"]')).toBeVisible({ timeout: 60_000 });
  page.once("dialog", (d) => d.accept());
  await page.getByRole("button", { name: "Delete" }).click();
  await expect(page.getByRole("heading", { name: "Resources", level: 1 })).toBeVisible({ timeout: TIMEOUT });
  await expect(page.locator('tr[data-resource="gpt"]')).toBeVisible({ timeout: TIMEOUT });
  await expect(page.locator('tr[data-resource="other"]')).toHaveCount(0, { timeout: TIMEOUT });
  const gone = await api(cluster.url(cluster.leaderId), "GET", "/v1/resources/other", { token });
  assert.equal(gone.status, 404);

  // A phone-sized window: the same views, readable.
  const phone = await newPage(cluster.url(follower), { width: 390, height: 844 });
  await signIn(phone, token);
  await shot(phone, "resources-phone");
  await phone.goto(`${cluster.url(follower)}/ui/#/resources/gpt`);
  await expect(phone.getByRole("heading", { name: "gpt", level: 1 })).toBeVisible();
  await shot(phone, "resource-phone");
  await phone.getByRole("link", { name: "API keys" }).click();
  await expect(phone.locator('tr[data-key="gpt-team"]')).toBeVisible({ timeout: TIMEOUT });
  await shot(phone, "keys-phone");
  await phone.getByRole("link", { name: "Cluster" }).click();
  await expect(phone.locator("#cluster-summary")).toHaveAttribute("data-leader", String(cluster.leaderId), { timeout: TIMEOUT });
  await shot(phone, "cluster-phone");
  await phone.close();

  // The key reached no URL and no log.
  for (const n of cluster.nodes) {
    const log = readFileSync(n.log, "utf8");
    assert.ok(!log.includes(token), `node ${n.id} logged the admin token`);
    for (const k of [secret, teamKey, monitorKey, noneKey]) assert.ok(!log.includes(k), `node ${n.id} logged a key`);
  }
  assert.deepEqual(consoleErrors, [], "no script or CSP errors in the page");
});

test("10 000 resources: one page at a time, filter and sort on the server", { timeout: 600_000 }, async () => {
  const token = cluster.token;
  const base = cluster.url(cluster.leaderId);
  const N = 10_000;
  let i = 0;
  const worker = async () => {
    while (i < N) {
      const name = `r-${String(i++).padStart(5, "0")}`;
      const r = await api(base, "PUT", `/v1/resources/${name}`, { token, body: { concurrency: 1 + (i % 7) } });
      assert.ok(r.status === 201 || r.status === 200, `${name}: ${r.status}`);
    }
  };
  await Promise.all(Array.from({ length: 32 }, worker));
  const page = await newPage(cluster.url(follower));
  await signIn(page, token);
  const status = page.locator(".page-status");
  await expect(status).toContainText(/ of 10,00\d$/, { timeout: TIMEOUT });
  assert.equal(await page.locator("#resources tbody tr").count(), 50, "one page of 50 rows");
  await page.getByLabel("Filter by name").fill("r-0999");
  await expect(status).toHaveText(/^1–10 of 10$/, { timeout: TIMEOUT });
  await page.getByLabel("Filter by name").fill("");
  // Keyboard: sort by slots held, highest first.
  await page.getByRole("button", { name: "Slots held" }).focus();
  await page.keyboard.press("Enter");
  await expect(page.locator('th[data-sort="held"]')).toHaveAttribute("aria-sort", "descending", { timeout: TIMEOUT });
  await page.getByRole("button", { name: "Next page" }).click();
  await expect(status).toContainText(/^51–100 of/, { timeout: TIMEOUT });
  await shot(page, "resources-10000");
  await page.close();
  assert.deepEqual(consoleErrors, []);
});
