//! Nothing keeps Node alive after the last lease: a child process that acquires and
//! releases (in several ways) must exit on its own, well before a deadline.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { dirname, join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";

import { FakeCluster, KEEP_ALIVE_MS } from "./fakecluster.js";

const CHILD = join(dirname(fileURLToPath(import.meta.url)), "exit-child.js");
/** Generous for a loaded 2-core machine (15 s once ran out there at load 24); a socket
 *  or timer keeping the child alive would hold it longer still: the fake keeps idle
 *  connections open for 60 s (KEEP_ALIVE_MS). */
const EXIT_DEADLINE_MS = 40_000;

assert.ok(EXIT_DEADLINE_MS < KEEP_ALIVE_MS, "a leaked keep-alive socket must outlast the deadline");

let fake: FakeCluster;
before(async () => {
  fake = await FakeCluster.start(1);
});
after(() => fake.close());

async function runChild(mode: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [CHILD, mode], {
    env: { ...process.env, RATEQUEUE_URL: fake.urls[0]!, RATEQUEUE_API_KEY: "k" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  let timer: NodeJS.Timeout | undefined;
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  const deadline = new Promise<"deadline">((r) => (timer = setTimeout(() => r("deadline"), EXIT_DEADLINE_MS)));
  const outcome = await Promise.race([exited, deadline]);
  clearTimeout(timer);
  if (outcome === "deadline") {
    child.kill("SIGKILL");
    assert.fail(`the child (${mode}) was still alive ${EXIT_DEADLINE_MS} ms after starting; stdout: ${stdout} stderr: ${stderr}`);
  }
  return { code: outcome, stdout, stderr };
}

for (const mode of ["acquire", "using", "many", "aborted"]) {
  test(`a child that uses the SDK (${mode}) exits on its own`, async () => {
    fake.concurrency = 1;
    for (const l of fake.leases.values()) l.released = true;
    const r = await runChild(mode);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "done\n");
    assert.equal(fake.held(), 0, "its leases were released");
  });
}
