// Copies the pinned uPlot from node_modules (package-lock.json) into the dashboard's
// embedded files, node/server/ui/vendor/uplot/, with its licence and version.
//
//   node vendor.mjs          copy (after changing the pinned version: npm install first)
//   node vendor.mjs --check  fail unless the committed copy is byte-identical to the
//                            locked package (the test command runs this)
//
// `cargo build` never needs npm: the copy is committed.
import { readFileSync, writeFileSync, mkdirSync, existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const pkgDir = join(here, "node_modules", "uplot");
const outDir = join(here, "..", "node/server/ui/vendor/uplot");
const check = process.argv.includes("--check");

const lock = JSON.parse(readFileSync(join(here, "package-lock.json"), "utf8"));
const locked = lock.packages["node_modules/uplot"]?.version;
const installed = JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8")).version;
if (!locked || locked !== installed) {
  console.error(`uplot: package-lock.json pins ${locked}, node_modules has ${installed}: run npm ci`);
  process.exit(1);
}

const files = [
  ["dist/uPlot.esm.js", "uPlot.esm.js"],
  ["dist/uPlot.min.css", "uPlot.min.css"],
  ["LICENSE", "LICENSE"],
];
const wanted = new Map(files.map(([from, to]) => [to, readFileSync(join(pkgDir, from))]));
wanted.set("VERSION", Buffer.from(`uplot ${installed} (npm, MIT; see LICENSE)\n`));

let stale = [];
for (const [name, bytes] of wanted) {
  const target = join(outDir, name);
  const same = existsSync(target) && Buffer.compare(readFileSync(target), bytes) === 0;
  if (same) continue;
  if (check) {
    stale.push(name);
  } else {
    mkdirSync(outDir, { recursive: true });
    writeFileSync(target, bytes);
    console.log(`wrote ${target}`);
  }
}
if (stale.length) {
  console.error(`node/server/ui/vendor/uplot differs from uplot ${installed}: ${stale.join(", ")}; run: cd dashboard && npm ci && node vendor.mjs`);
  process.exit(1);
}
if (check) console.log(`node/server/ui/vendor/uplot matches uplot ${installed}`);
