//! The published shape: `npm pack` makes a tarball that installs into a fresh project
//! with no other package, and works from CommonJS (`require`), ES modules (`import`) and
//! TypeScript (its .d.ts, `await using` with the settings the README documents).

import assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
import { promisify } from "node:util";
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";

import { VERSION } from "../../src/index.js";
import { FakeCluster } from "./fakecluster.js";

const PKG = join(dirname(fileURLToPath(import.meta.url)), "../../..");
const NPM = process.env["NPM"] ?? "npm";
const tsc = createRequire(join(PKG, "package.json")).resolve("typescript/bin/tsc");

let fake: FakeCluster;
let scratch: string;
let tarball: string;

before(async () => {
  fake = await FakeCluster.start(1);
  fake.concurrency = 10;
  scratch = mkdtempSync(join(tmpdir(), "rq-js-pack-"));
  const out = execFileSync(NPM, ["pack", "--json", "--pack-destination", scratch], { cwd: PKG, encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] });
  const info = JSON.parse(out.slice(out.indexOf("["))) as { filename: string; files: { path: string }[] }[];
  tarball = join(scratch, info[0]!.filename);
  const app = join(scratch, "app");
  execFileSync("mkdir", [app]);
  writeFileSync(join(app, "package.json"), JSON.stringify({ name: "app", version: "1.0.0", private: true }));
  execFileSync(NPM, ["install", "--no-audit", "--no-fund", "--offline", "--no-package-lock", tarball], { cwd: app, stdio: ["ignore", "ignore", "inherit"] });
});
after(async () => {
  await fake.close();
  rmSync(scratch, { recursive: true, force: true });
});

/** Runs node in the scratch project (asynchronously: the fake cluster answers from this process). */
const run = async (args: string[]): Promise<string> => {
  const { stdout } = await promisify(execFile)(process.execPath, args, {
    cwd: join(scratch, "app"),
    encoding: "utf8",
    env: { ...process.env, RATEQUEUE_URL: fake.urls[0]!, RATEQUEUE_API_KEY: "k" },
  });
  return stdout.trim();
};

test("the package has its version, its builds and no dependencies", () => {
  const pkg = JSON.parse(readFileSync(join(PKG, "package.json"), "utf8"));
  assert.equal(pkg.version, VERSION);
  assert.equal(pkg.dependencies, undefined, "no runtime dependencies");
  const installed = join(scratch, "app/node_modules");
  assert.deepEqual(readdirSync(installed).filter((n) => !n.startsWith(".")), ["@ratequeue"], "nothing else was installed");
  const files = readdirSync(join(installed, "@ratequeue/sdk/dist/cjs"));
  for (const f of ["index.js", "index.d.ts", "package.json"]) assert.ok(files.includes(f), f);
});

test("require() from CommonJS", async () => {
  const out = await run(["-e", `
    const { ratequeue, Client, WouldBlock, RateQueueError } = require("@ratequeue/sdk");
    ratequeue.acquire("r", { load: 2 }, async (lease) => lease.load).then((load) => {
      console.log(JSON.stringify({ load, rejected: new WouldBlock("x") instanceof RateQueueError, client: typeof Client }));
    });
  `]);
  assert.deepEqual(JSON.parse(out), { load: 2, rejected: true, client: "function" });
});

test("import from an ES module", async () => {
  const out = await run(["--input-type=module", "-e", `
    import { ratequeue, lease } from "@ratequeue/sdk";
    import sdk from "@ratequeue/sdk";
    const l = await lease("r", { load: 3 });
    const state = await l.release();
    console.log(JSON.stringify({ state, same: sdk === ratequeue, load: l.load }));
  `]);
  assert.deepEqual(JSON.parse(out), { state: "released", same: true, load: 3 });
});

test("TypeScript: types resolve for import and require, and await using compiles and runs", async () => {
  const app = join(scratch, "app");
  writeFileSync(join(app, "esm.mts"), `
    import { ratequeue, type Lease, WouldBlock } from "@ratequeue/sdk";
    const n: number = await ratequeue.acquire("r", { load: 4, lane: "batch" }, async (lease: Lease) => lease.load);
    {
      await using lease = await ratequeue.lease("r", { waitMs: 1000 });
      lease.setActualLoad(1);
    }
    const e: WouldBlock = new WouldBlock("x");
    console.log(JSON.stringify({ n, code: e.code }));
  `);
  writeFileSync(join(app, "cjs.cts"), `
    import sdk = require("@ratequeue/sdk");
    const c: sdk.Client = new sdk.Client({ timing: { retryBudgetMs: 1000 } });
    void c;
  `);
  writeFileSync(join(app, "tsconfig.json"), JSON.stringify({
    compilerOptions: {
      target: "ES2022",
      lib: ["ES2022", "esnext.disposable"],
      module: "NodeNext",
      moduleResolution: "NodeNext",
      strict: true,
      typeRoots: [join(PKG, "node_modules/@types")],
      types: ["node"],
      outDir: "out",
    },
    files: ["esm.mts", "cjs.cts"],
  }));
  execFileSync(process.execPath, [tsc, "-p", app], { cwd: app, stdio: "inherit" });
  assert.deepEqual(JSON.parse(await run(["out/esm.mjs"])), { n: 4, code: "would_block" });
  assert.equal(await run(["out/cjs.cjs"]), "");
});
