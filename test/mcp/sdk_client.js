// test/mcp: the official MCP TypeScript SDK's Client over StdioClientTransport
// against `viv mcp`.
//   node sdk_client.js VIV DB_FILE SOCKET EGRESS_SOCKET HTTP_PORT
// (EGRESS_SOCKET: a vivd whose python policy may reach 127.0.0.1:HTTP_PORT, a stand-in server)
// Prints one "ok - ..." / "not ok - ...: why" line per test.
const path = require("path");
const sdk = path.join(process.env.NPM_DIR, "node_modules", "@modelcontextprotocol", "sdk", "dist", "cjs");
const { Client } = require(path.join(sdk, "client", "index.js"));
const { StdioClientTransport } = require(path.join(sdk, "client", "stdio.js"));

const [viv, dbFile, socket, egressSocket, httpPort] = process.argv.slice(2);
let failed = 0;

function report(name, cond, why) {
  if (cond) console.log(`ok - ${name}`);
  else {
    failed++;
    console.log(`not ok - ${name}: ${why}`);
  }
}

async function connect(args) {
  const transport = new StdioClientTransport({ command: viv, args, stderr: "inherit" });
  const client = new Client({ name: "vivarium-test", version: "1.0.0" });
  await client.connect(transport);
  return client;
}

const text = (r) => (r.content || []).map((c) => c.text).join("");
const show = (r) => JSON.stringify(r).slice(0, 400);

// One test: a failure (a rejected promise included) is that test's line, not the run's end.
async function test(name, fn) {
  try {
    await fn();
  } catch (e) {
    report(name, false, `threw ${e && e.stack ? e.stack.split("\n").slice(0, 2).join(" ") : e}`);
  }
}

async function privateServer() {
  const c = await connect(["mcp"]);
  await test("sdk_initialize_names_server_and_tools_capability", async () => {
    const info = c.getServerVersion(), caps = c.getServerCapabilities();
    report("sdk_initialize_names_server_and_tools_capability", info.name === "vivarium" && caps.tools,
           `${JSON.stringify(info)} ${JSON.stringify(caps)}`);
  });
  await test("sdk_list_tools_with_limits_in_schemas", async () => {
    const { tools } = await c.listTools();
    const names = tools.map((t) => t.name).sort().join(",");
    const py = tools.find((t) => t.name === "python");
    const ok = names === "python,python_session_close,python_session_open,r,shell" && py &&
      py.inputSchema.required.includes("code") && py.inputSchema.properties.timeout_ms.maximum === 600000 &&
      /timeout 10000 ms by default, at most 600000 ms/.test(py.description) && /memory 2048 MB/.test(py.description) &&
      /1048576 bytes each/.test(py.description) && tools.every((t) => !/Limits:/.test(t.description) ||
      t.description.includes("No network."));
    report("sdk_list_tools_with_limits_in_schemas (no sql without --db)", ok, `${names} ${py && py.description}`);
  });
  await test("sdk_python_print", async () => {
    const r = await c.callTool({ name: "python", arguments: { code: "print('hello from the jail')" } });
    report("sdk_python_print", r.isError === false && text(r) === "hello from the jail\n", show(r));
  });
  await test("sdk_python_exception_is_error", async () => {
    const r = await c.callTool({ name: "python", arguments: { code: "print('before')\n1/0" } });
    const t = text(r);
    report("sdk_python_exception_is_error (traceback and exit code 1 in the text)",
           r.isError === true && t.startsWith("before\n") && t.includes("ZeroDivisionError") && t.endsWith("[exit code 1]\n"),
           show(r));
  });
  await test("sdk_shell_stdout_stderr_exit", async () => {
    const r = await c.callTool({ name: "shell", arguments: { code: "echo out; echo err >&2; exit 3" } });
    report("sdk_shell_stdout_then_stderr_then_exit_code", r.isError === true && text(r) === "out\nerr\n[exit code 3]\n", show(r));
    const r2 = await c.callTool({ name: "shell", arguments: { code: "echo clean" } });
    report("sdk_shell_clean_exit_not_error", r2.isError === false && text(r2) === "clean\n", show(r2));
  });
  await test("sdk_r_script", async () => {
    const r = await c.callTool({ name: "r", arguments: { code: "x <- c(2, 4, 6); cat(mean(x), '\\n'); stop('bad')" } });
    const t = text(r);
    report("sdk_r_output_then_error_and_exit_code", r.isError === true && t.startsWith("4 \n") && t.includes("bad") &&
           t.endsWith("[exit code 1]\n"), show(r));
    const r2 = await c.callTool({ name: "r", arguments: { code: "print(nrow(MASS::Boston))" } });
    report("sdk_r_recommended_packages_load", r2.isError === false && text(r2) === "[1] 506\n", show(r2));
  });
  await test("sdk_python_session", async () => {
    const o = await c.callTool({ name: "python_session_open", arguments: {} });
    const id = text(o);
    report("sdk_session_open_gives_id", o.isError === false && id.length > 0 && o.structuredContent &&
           o.structuredContent.session === id, show(o));
    const set = await c.callTool({ name: "python", arguments: { code: "x = 41", session: id } });
    const get = await c.callTool({ name: "python", arguments: { code: "print(x + 1)", session: id } });
    report("sdk_session_keeps_globals", set.isError === false && get.isError === false && text(get) === "42\n",
           `${show(set)} ${show(get)}`);
    const fresh = await c.callTool({ name: "python", arguments: { code: "print(x)" } });
    report("sdk_one_shot_python_does_not_see_session_globals",
           fresh.isError === true && text(fresh).includes("NameError"), show(fresh));
    const cl = await c.callTool({ name: "python_session_close", arguments: { session: id } });
    const after = await c.callTool({ name: "python", arguments: { code: "print(x)", session: id } });
    report("sdk_session_closed_then_gone", cl.isError === false && after.isError === true &&
           /sandbox error (not_found|session_lost)/.test(text(after)), `${show(cl)} ${show(after)}`);
  });
  await test("sdk_timeout", async () => {
    const r = await c.callTool({ name: "python", arguments: { code: "print('spin', flush=True)\nwhile True: pass", timeout_ms: 1000 } });
    report("sdk_timeout_kills_and_says_so", r.isError === true && text(r).startsWith("spin\n") &&
           text(r).endsWith("[timed out: killed at its 1000 ms deadline]\n"), show(r));
  });
  await test("sdk_timeout_over_policy_max", async () => {
    const r = await c.callTool({ name: "python", arguments: { code: "print(1)", timeout_ms: 600001 } });
    report("sdk_timeout_over_policy_max_refused_before_running", r.isError === true &&
           /timeout_ms must be an integer from 1 to 600000/.test(text(r)), show(r));
  });
  await test("sdk_bad_arguments", async () => {
    const r = await c.callTool({ name: "python", arguments: {} });
    const r2 = await c.callTool({ name: "shell", arguments: { code: "echo", extra: 1 } });
    report("sdk_missing_or_unknown_argument_is_error_result", r.isError === true && /code is required/.test(text(r)) &&
           r2.isError === true && /unknown argument 'extra'/.test(text(r2)), `${show(r)} ${show(r2)}`);
  });
  await test("sdk_unknown_tool", async () => {
    let err = null;
    try {
      await c.callTool({ name: "rm_rf", arguments: {} });
    } catch (e) {
      err = e;
    }
    report("sdk_unknown_tool_is_invalid_params_error", err && err.code === -32602 && /unknown tool 'rm_rf'/.test(err.message),
           `${err && err.code} ${err && err.message}`);
    const sql = await c.callTool({ name: "sql", arguments: { query: "select 1" } }).catch((e) => e);
    report("sdk_sql_not_offered_without_db", sql && sql.code === -32602, `${sql && (sql.code || show(sql))}`);
  });
  await test("sdk_output_bytes_stay_valid_json", async () => {
    const r = await c.callTool({ name: "python", arguments: { code: "import sys; sys.stdout.buffer.write(b'a\\0b\\xff\\n')" } });
    report("sdk_nul_and_invalid_utf8_output_arrive_as_text", r.isError === false && text(r) === "a\u0000b\uFFFD\n", show(r));
  });
  await test("sdk_output_cap", async () => {
    const r = await c.callTool({ name: "python", arguments: { code: "print('y' * 2000000)" } });
    const t = text(r);
    report("sdk_output_over_cap_cut_and_said", r.isError === false && t.length < 1100000 &&
           /\[output over the cap: \d+ bytes of stdout and 0 of stderr dropped\]\n$/.test(t), t.slice(-200));
  });
  await c.close();
}

async function dbServer() {
  const c = await connect(["mcp", "--db", dbFile]);
  await test("sdk_sql", async () => {
    const { tools } = await c.listTools();
    const sql = tools.find((t) => t.name === "sql");
    report("sdk_sql_listed_with_db", sql && sql.description.includes(dbFile) && sql.annotations.readOnlyHint === true,
           JSON.stringify(sql));
    const r = await c.callTool({ name: "sql", arguments: { query: "SELECT name, n FROM genes ORDER BY n;" } });
    report("sdk_sql_select", r.isError === false && text(r) === "name\tn\nTP53\t1\nBRCA1\t2\n", show(r));
    const w = await c.callTool({ name: "sql", arguments: { query: "DELETE FROM genes;" } });
    const again = await c.callTool({ name: "sql", arguments: { query: "SELECT count(*) FROM genes;" } });
    report("sdk_sql_write_refused_database_unchanged", w.isError === true && /refused|readonly/.test(text(w)) &&
           text(again) === "count(*)\n2\n", `${show(w)} ${show(again)}`);
  });
  await c.close();
}

async function socketServer() {
  const c = await connect(["mcp", "--socket", socket]);
  await test("sdk_socket", async () => {
    const r = await c.callTool({ name: "python", arguments: { code: "print(6 * 7)" } });
    report("sdk_socket_running_vivd_python", r.isError === false && text(r) === "42\n", show(r));
    // this vivd has no @db: the sql tool is listed (the daemon's database) and its call says why it failed
    const s = await c.callTool({ name: "sql", arguments: { query: "select 1;" } });
    report("sdk_socket_sql_without_daemon_db_is_error", s.isError === true && /sandbox error/.test(text(s)), show(s));
  });
  await c.close();
}

async function egressServer() {
  const c = await connect(["mcp", "--socket", egressSocket]);
  await test("sdk_egress", async () => {
    const { tools } = await c.listTools();
    const py = tools.find((t) => t.name === "python"), sh = tools.find((t) => t.name === "shell");
    const says = `Network: only 127.0.0.1:${httpPort}, through the HTTP proxy in HTTP_PROXY and HTTPS_PROXY`;
    report("sdk_egress_description_names_the_hosts", py && py.description.includes(says) &&
           /at most 3 connections at once and 268435456 bytes in all/.test(py.description) &&
           !py.description.includes("No network") && sh && sh.description.includes("No network."),
           `${py && py.description} || ${sh && sh.description}`);
    const fetch = (url) => `import urllib.request, urllib.error
try:
    print(urllib.request.urlopen('${url}', timeout=10).read().decode())
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode().strip())`;
    const r = await c.callTool({ name: "python", arguments: { code: fetch(`http://127.0.0.1:${httpPort}/gene/TP53`) } });
    report("sdk_egress_python_reaches_the_listed_host", r.isError === false && text(r).includes('"symbol": "TP53"'), show(r));
    const r2 = await c.callTool({ name: "python", arguments: { code: fetch("http://169.254.169.254/latest/meta-data/") } });
    report("sdk_egress_python_unlisted_host_refused", r2.isError === false &&
           text(r2).startsWith("403 vivarium egress: not_listed"), show(r2));
    const r3 = await c.callTool({ name: "shell", arguments: { code: `curl -sS -m 5 http://127.0.0.1:${httpPort}/gene/TP53` } });
    report("sdk_egress_shell_without_allowlist_has_no_network", r3.isError === true && !text(r3).includes("stand-in"), show(r3));
  });
  await c.close();
}

(async () => {
  for (const [name, fn] of [["private", privateServer], ["db", dbServer], ["socket", socketServer], ["egress", egressServer]]) {
    try {
      await fn();
    } catch (e) {
      report(`sdk_${name}_server`, false, `${e && e.stack ? e.stack.split("\n").slice(0, 3).join(" ") : e}`);
    }
  }
  process.exit(failed ? 1 : 0);
})();
