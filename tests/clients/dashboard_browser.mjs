// The dashboard in a real browser: Debian's chromium, headless, driven by
// playwright-core (installed by scripts/test.sh into build/clients-node).
//
//   ROOT_URL=http://127.0.0.1:8080 NODES=127.0.0.1:7071,127.0.0.1:7072 SCREENSHOT=out.png \
//   FERRY_NODE_MODULES=build/clients-node/node_modules node tests/clients/dashboard_browser.mjs
//
// While a long request runs: every node of NODES appears in the chain with a
// non-zero tok/s, memory and compute; the request is listed; then the chat box
// streams a reply. Saves a screenshot. Prints "ok - ..." per check, "FAIL - ..."
// and exit 1 on the first failure.
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const modules = process.env.FERRY_NODE_MODULES || path.join(here, "../../build/clients-node/node_modules");
const { chromium } = await import(path.join(modules, "playwright-core/index.mjs"));

const root = (process.env.ROOT_URL || "").replace(/\/$/, "");
const nodes = (process.env.NODES || "").split(",").filter(Boolean);
const screenshot = process.env.SCREENSHOT || "dashboard.png";
const fail = (msg) => { console.log("FAIL - " + msg); process.exit(1); };
const ok = (msg) => console.log("ok - " + msg);
if (!root || !nodes.length) fail("set ROOT_URL and NODES");

const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium", headless: true,
                                        args: ["--no-sandbox", "--disable-gpu"] });
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(root + "/", { waitUntil: "load" });
  if ((await page.title()) !== "ferry") fail("the page's title is " + (await page.title()));
  ok("the dashboard loads from the binary");

  // A long request in the background, so the figures are live.
  const long = fetch(root + "/v1/completions", { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ prompt: "a b c", max_tokens: 400, temperature: 1, seed: 5 }) });

  const deadline = Date.now() + 30000;
  let seen = null;
  while (Date.now() < deadline) {
    seen = await page.evaluate(() => [...document.querySelectorAll(".node")].map((n) => ({
      address: n.dataset.address,
      tok: parseFloat(n.querySelector(".tok-s").textContent),
      compute: parseFloat(n.querySelector(".compute").textContent),
      memory: n.querySelector(".memory").textContent,
      requests: document.querySelectorAll("#requests tr").length,
    })));
    const live = nodes.every((a) => seen.some((n) => n.address === a && n.tok > 0 && n.compute > 0 && !n.memory.startsWith("0.0 MB")));
    if (live && seen.length && seen[0].requests > 0) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  for (const a of nodes) {
    const n = seen && seen.find((x) => x.address === a);
    if (!n) fail("node " + a + " is not in the chain: " + JSON.stringify(seen));
    if (!(n.tok > 0 && n.compute > 0)) fail("node " + a + " shows no live figures: " + JSON.stringify(n));
  }
  ok("every node appears with live tok/s, compute and memory: " + JSON.stringify(seen));
  if (!(seen[0].requests > 0)) fail("the request in flight is not listed");
  ok("the request in flight is listed");
  const chart = await page.evaluate(() => document.getElementById("chart").toDataURL().length);
  if (chart < 2000) fail("the chart is empty");
  ok("the chart is drawn");

  await page.fill("#chat-input", "Tell me a story");
  await page.click("#chat-send");
  await page.waitForFunction(() => {
    const r = document.querySelector("#chat-log .reply");
    return r && r.textContent.startsWith("ferry: ") && r.textContent.length > 12;
  }, null, { timeout: 60000 });
  const reply = await page.textContent("#chat-log .reply");
  ok("the chat box streams a reply: " + JSON.stringify(reply.slice(0, 60)));
  await page.screenshot({ path: screenshot, fullPage: true });
  ok("screenshot saved to " + screenshot);
  if (errors.length) fail("page errors: " + errors.join("; "));
  await long;
} finally {
  await browser.close();
}
console.log("all dashboard checks passed");
