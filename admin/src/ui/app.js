// Berth's dashboard: plain JavaScript over the admin API, no build step and
// no request leaving this host. The token lives in sessionStorage only.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { token: null, tenant: null, service: null, poll: null, logs: null, topic: null };

class ApiError extends Error {}

async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options,
    headers: { authorization: `Bearer ${state.token}`, ...(options.headers || {}) },
  });
  if (!response.ok) {
    let detail = `${response.status} ${response.statusText}`;
    try { detail = (await response.json()).detail || detail; } catch (_) { /* not JSON */ }
    throw new ApiError(detail);
  }
  return response;
}
const json = async (path) => (await api(path)).json();

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text ?? "-";
  row.appendChild(td);
  return td;
}

function fill(table, items, cells, onClick) {
  const body = $(table).querySelector("tbody");
  body.replaceChildren();
  for (const item of items) {
    const row = document.createElement("tr");
    for (const text of cells(item)) cell(row, text);
    if (onClick) {
      row.className = "link";
      row.addEventListener("click", () => onClick(item, row));
    }
    body.appendChild(row);
  }
  return body;
}

const serving = (s) => s.active ?? (s.split
  ? Object.entries(s.split).map(([l, w]) => `${l}=${w}`).join(", ") : "nothing");
const ms = (x) => (x == null ? "-" : `${x.toFixed(x < 10 ? 2 : 0)} ms`);
const when = (millis) => new Date(millis).toLocaleString();

async function signIn(token) {
  state.token = token;
  const who = await json("/v1/whoami");
  sessionStorage.setItem("berth-token", token);
  $("sign-in-panel").hidden = true;
  $("sign-out").hidden = false;
  if (who.role === "operator") {
    $("who").textContent = "operator";
    $("tenants-panel").hidden = false;
    const tenants = await json("/v1/tenants");
    fill("tenants", tenants, (t) => [t.name, t.host], (t, row) => {
      document.querySelectorAll("#tenants tr").forEach((r) => r.classList.remove("selected"));
      row.classList.add("selected");
      showTenant(t.name);
    });
  } else {
    $("who").textContent = `tenant ${who.tenant}`;
    await showTenant(who.tenant);
  }
}

async function showTenant(tenant) {
  state.tenant = tenant;
  closeService();
  $("tenant-name").textContent = tenant;
  $("services-panel").hidden = false;
  $("topics-tenant").textContent = tenant;
  $("topics-panel").hidden = false;
  $("quota-tenant").textContent = tenant;
  $("quota-panel").hidden = false;
  state.topic = null;
  $("dead-letters-panel").hidden = true;
  await Promise.all([refreshServices(), refreshTopics(), refreshQuotas()]);
  restartPolling();
}

const mib = (bytes) => `${(bytes / 1048576).toFixed(1)} MiB`;
const QUOTAS = [
  ["concurrency", "Requests running", String],
  ["memory_bytes", "Instance memory", mib],
  ["storage_bytes", "Stored components", mib],
  ["services", "Services", String],
  ["versions", "Versions", String],
];

// Each quota of the tenant as a bar: what is in use against the limit.
async function refreshQuotas() {
  const tenant = state.tenant;
  const usage = await json(`/v1/tenants/${tenant}/usage`);
  if (tenant !== state.tenant) return;
  const rows = [];
  for (const [key, label, show] of QUOTAS) {
    const { used, limit } = usage[key];
    const share = limit > 0 ? Math.min(1, used / limit) : 0;
    const name = document.createElement("span");
    name.textContent = label;
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.dataset.quota = key;
    const fillBar = document.createElement("span");
    fillBar.style.width = `${(share * 100).toFixed(1)}%`;
    fillBar.className = share >= 1 ? "full" : share >= 0.8 ? "high" : "";
    bar.appendChild(fillBar);
    const figures = document.createElement("span");
    figures.textContent = `${show(used)} of ${show(limit)}`;
    rows.push(name, bar, figures);
  }
  $("quotas").replaceChildren(...rows);
}

// A topic's backlog and dead letters; a click on a topic shows its dead
// letters, which can be sent again from the first attempt.
async function refreshTopics() {
  const tenant = state.tenant;
  const { topics } = await json(`/v1/tenants/${tenant}/topics`);
  if (tenant !== state.tenant) return;
  $("no-topics").hidden = topics.length > 0;
  const body = fill("topics", topics, (t) => [t.name, String(t.backlog),
    `${(t.oldest_age_ms / 1000).toFixed(1)} s`, String(t.dead_letters),
    t.last_delivery_ms ? when(t.last_delivery_ms) : "-",
    t.subscriptions.join(", ") || "-"], (t) => showDeadLetters(t.name));
  [...body.rows].forEach((row, i) => {
    row.dataset.topic = topics[i].name;
    row.classList.toggle("selected", topics[i].name === state.topic);
  });
  if (state.topic) await refreshDeadLetters();
}

async function showDeadLetters(topic) {
  state.topic = topic;
  $("dead-topic").textContent = topic;
  $("dead-letters-panel").hidden = false;
  await refreshDeadLetters();
}

async function refreshDeadLetters() {
  const { tenant, topic } = state;
  const { dead_letters: dead } =
    await json(`/v1/tenants/${tenant}/topics/${encodeURIComponent(topic)}/dead-letters`);
  if (tenant !== state.tenant || topic !== state.topic) return;
  fill("dead-letters", dead, (d) => [d.id, d.type, `${d.service} ${d.path}`,
    String(d.attempts), when(d.published_ms), d.last_error]);
  $("redrive").disabled = dead.length === 0;
}

async function refreshServices() {
  const tenant = state.tenant;
  const [services, stats] = await Promise.all([
    json(`/v1/tenants/${tenant}/services`),
    json(`/v1/tenants/${tenant}/stats`),
  ]);
  if (tenant !== state.tenant) return;
  const byName = Object.fromEntries(stats.services.map((s) => [s.service, s.windows]));
  $("no-services").hidden = services.length > 0;
  const body = fill("services", services, (s) => {
    const w = byName[s.name] || {};
    return [s.name, s.route, serving(s) + (s.declared ? " (config file)" : ""),
      String(w["15m"]?.requests ?? 0),
      String(w["15m"]?.errors ?? 0), ms(w["1m"]?.p99_ms)];
  }, (s) => showService(s.name));
  [...body.rows].forEach((row, i) => {
    row.dataset.service = services[i].name;
    row.classList.toggle("selected", services[i].name === state.service);
  });
}

async function showService(name) {
  state.service = name;
  $("detail").hidden = false;
  $("service-name").textContent = name;
  $("follow").checked = false;
  stopLogs();
  await Promise.all([refreshService(), refreshLogs()]);
  restartPolling();
}

function closeService() {
  state.service = null;
  stopLogs();
  $("detail").hidden = true;
}

async function refreshService() {
  const { tenant, service } = state;
  const base = `/v1/tenants/${tenant}/services/${service}`;
  const [info, stats, history] = await Promise.all([
    json(base), json(`${base}/stats`), json(`${base}/history`),
  ]);
  if (service !== state.service) return;
  $("service-route").textContent = info.route ?? "-";
  $("service-serving").textContent = serving(info);
  $("service-url").textContent = info.url ?? "";
  $("service-url").href = info.url ?? "#";
  $("service-declared").hidden = !info.declared;
  const weights = info.active ? { [info.active]: 100 } : (info.split ?? {});
  drawSplit(weights);
  const weight = (label) => (weights[label] ? `${weights[label]}%` : "");
  const body = fill("versions", info.versions, (v) => [v.label, weight(v.label), v.digest,
    `${v.size} B`, when(v.created_at * 1000), ""]);
  [...body.rows].forEach((row, i) => {
    const label = info.versions[i].label;
    row.dataset.version = label;
    if (info.declared || weights[label] === 100) return;
    row.lastChild.appendChild(serveButton(label));
  });
  const events = history.events.slice().reverse();
  const rows = fill("history", events, (e) => [when(e.at), e.actor || "-", e.action, e.detail]);
  // An upload's detail starts with its label: serve it again from here.
  [...rows.rows].forEach((row, i) => {
    const label = events[i].action === "upload" ? events[i].detail.split(" ")[0] : null;
    if (!label || info.declared || weights[label] === 100
      || !info.versions.some((v) => v.label === label)) return;
    row.dataset.version = label;
    row.lastChild.append(" ", serveButton(label));
  });
  showStats(stats);
}

const SPLIT_COLOURS = ["#2f6db5", "#d98a1c", "#3c8d5a", "#8a4fb5", "#b3261e"];

// The deployment as a bar: one segment per version, as wide as its weight.
function drawSplit(weights) {
  const segments = Object.entries(weights).filter(([, w]) => w > 0).map(([label, w], i) => {
    const segment = document.createElement("span");
    segment.style.flex = String(w);
    segment.style.background = SPLIT_COLOURS[i % SPLIT_COLOURS.length];
    segment.textContent = `${label} ${w}%`;
    segment.dataset.version = label;
    return segment;
  });
  $("split-bar").replaceChildren(...segments);
}

function serveButton(label) {
  const serve = document.createElement("button");
  serve.type = "button";
  serve.className = "serve";
  serve.textContent = "Serve this";
  serve.addEventListener("click", () => rollbackTo(label));
  return serve;
}

// Serves `label` again: a rollback to it, recorded in the history.
async function rollbackTo(label) {
  const { tenant, service } = state;
  $("rollback-error").textContent = "";
  try {
    await api(`/v1/tenants/${tenant}/services/${service}/rollback`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ to: label }),
    });
    await refreshService();
  } catch (e) {
    $("rollback-error").textContent = `Rollback failed: ${e.message}`;
  }
}

function showStats(stats) {
  const w = stats.windows;
  $("requests-15m").textContent = String(w["15m"].requests);
  $("rate-1m").textContent = `${w["1m"].requests_per_second.toFixed(2)}/s`;
  $("errors-15m").textContent = String(w["15m"].errors);
  $("latency-1m").textContent = `${ms(w["1m"].p50_ms)} / ${ms(w["1m"].p99_ms)}`;
  $("cpu-1m").textContent = ms(w["1m"].cpu_ms_per_request);
  const peak = w["15m"].memory_peak_bytes;
  $("memory-15m").textContent = peak ? `${(peak / 1048576).toFixed(1)} MiB` : "-";
  const slot = stats.slot_seconds;
  const now = Math.floor(Date.now() / 1000 / slot) * slot;
  // 15 minutes of slots, empty ones as zero, so the time axis is even.
  const points = new Map(stats.series.map((p) => [p.at, p]));
  const slots = [];
  for (let at = now - 179 * slot; at <= now; at += slot) slots.push(points.get(at) || { at });
  draw("chart-rate", [slots.map((p) => (p.requests || 0) / slot)], ["#2f6db5"]);
  draw("chart-errors", [slots.map((p) => (p.errors || 0) / slot)], ["#b3261e"]);
  draw("chart-latency", [slots.map((p) => p.p50_ms || 0), slots.map((p) => p.p99_ms || 0)],
    ["#2f6db5", "#d98a1c"]);
  draw("chart-cpu", [slots.map((p) => p.cpu_ms_per_request || 0)], ["#3c8d5a"]);
  draw("chart-memory", [slots.map((p) => (p.memory_peak_bytes || 0) / 1048576)], ["#8a4fb5"]);
}

function draw(id, lines, colours) {
  const svg = $(id);
  svg.replaceChildren();
  const top = Math.max(1e-9, ...lines.flat());
  lines.forEach((values, i) => {
    const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    const step = 300 / Math.max(1, values.length - 1);
    line.setAttribute("points", values.map((v, x) => `${x * step},${78 - (v / top) * 74}`).join(" "));
    line.setAttribute("stroke", colours[i]);
    svg.appendChild(line);
  });
  const label = document.createElementNS("http://www.w3.org/2000/svg", "title");
  label.textContent = `max ${top.toFixed(2)}`;
  svg.appendChild(label);
}

function showLog(line) {
  const logs = $("logs");
  const text = `${new Date(line.time_ms).toISOString()} ${line.level.padEnd(5)} ${line.version} ${line.request_id} ${line.message}\n`;
  logs.append(text);
  logs.scrollTop = logs.scrollHeight;
}

async function refreshLogs() {
  const { tenant, service } = state;
  const text = await (await api(`/v1/tenants/${tenant}/services/${service}/logs?limit=200`)).text();
  if (service !== state.service) return;
  $("logs").replaceChildren();
  text.split("\n").filter(Boolean).forEach((l) => showLog(JSON.parse(l)));
}

function stopLogs() {
  if (state.logs) state.logs.abort();
  state.logs = null;
}

async function followLogs() {
  stopLogs();
  const controller = new AbortController();
  state.logs = controller;
  const { tenant, service } = state;
  $("logs").replaceChildren();
  try {
    const response = await api(`/v1/tenants/${tenant}/services/${service}/logs?limit=200&follow=true`,
      { signal: controller.signal });
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let pending = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      pending += decoder.decode(value, { stream: true });
      const lines = pending.split("\n");
      pending = lines.pop();
      lines.filter(Boolean).forEach((l) => showLog(JSON.parse(l)));
    }
  } catch (e) {
    if (e.name !== "AbortError") $("logs").append(`(log stream ended: ${e.message})\n`);
  }
}

function restartPolling() {
  clearInterval(state.poll);
  state.poll = setInterval(async () => {
    try {
      if (state.tenant) await Promise.all([refreshServices(), refreshTopics(), refreshQuotas()]);
      if (state.service) await refreshService();
      if (state.service && !state.logs) await refreshLogs();
    } catch (e) {
      $("who").textContent = `error: ${e.message}`;
    }
  }, 2000);
}

$("sign-in-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("sign-in-error").textContent = "";
  try {
    await signIn($("token").value.trim());
  } catch (e) {
    state.token = null;
    $("sign-in-error").textContent = e instanceof ApiError ? `Sign-in failed: ${e.message}` : String(e);
  }
});

$("redrive").addEventListener("click", async () => {
  const { tenant, topic } = state;
  await api(`/v1/tenants/${tenant}/topics/${encodeURIComponent(topic)}/dead-letters/redrive`,
    { method: "POST" });
  await refreshTopics();
});

$("follow").addEventListener("change", () => {
  if ($("follow").checked) followLogs(); else { stopLogs(); refreshLogs(); }
});

$("sign-out").addEventListener("click", () => {
  sessionStorage.removeItem("berth-token");
  location.reload();
});

const saved = sessionStorage.getItem("berth-token");
if (saved) signIn(saved).catch(() => sessionStorage.removeItem("berth-token"));
