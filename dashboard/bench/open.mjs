// Keeps dashboards open for bench/dashboard.sh: creates RESOURCES resources (once), then
// opens TABS headless Chromium tabs on a follower's /ui/, half on the resources list
// sorted by grants/s, half on the benched resource's view, each refreshing once a
// second, until SIGTERM. Prints "open" when every tab shows live data.
//
//   node dashboard/bench/open.mjs <page base URL> <leader URL> <token> <resource> [tabs] [resources]
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { api, expect } from "../support/cluster.mjs";

const [base, leader, token, resource, tabsArg = "2", resourcesArg = "10000"] = process.argv.slice(2);
const tabs = Number(tabsArg);
const N = Number(resourcesArg);

let i = 0;
await Promise.all(Array.from({ length: 32 }, async () => {
  while (i < N) {
    const name = `dash-${String(i++).padStart(5, "0")}`;
    const r = await api(leader, "PUT", `/v1/resources/${name}`, { token, body: { concurrency: 1 + (i % 7) } });
    if (r.status !== 200 && r.status !== 201) throw new Error(`${name}: ${r.status}`);
  }
}));

const profile = mkdtempSync(join(tmpdir(), "rq-bench-chromium-"));
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  // This script closes the browser on SIGTERM itself (below), after which it removes the profile.
  handleSIGTERM: false,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
for (let t = 0; t < tabs; t++) {
  const page = await browser.newPage();
  await page.goto(`${base}/ui/`);
  await page.getByLabel("API key").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Resources", level: 1 }).waitFor();
  if (t % 2 === 0) {
    await page.getByRole("button", { name: "Grants/s" }).click();
    await expect(page.locator(".page-status")).toContainText(/of \d/);
  } else {
    await page.goto(`${base}/ui/#/resources/${resource}`);
    await expect(page.locator('[data-chart="Grants per second"] .sr-only')).toContainText("grants/s");
  }
}
console.log("open");
await new Promise((r) => process.once("SIGTERM", r));
await browser.close();
rmSync(profile, { recursive: true, force: true });
