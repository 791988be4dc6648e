// The supervisor's wallboard: waiting calls, service levels for today and the last hour
// (exactly /v1/stats for the period shown), prank and silent shares (/v1/reports), operators
// with pause reasons, dispatches nobody acknowledged, failing webhook deliveries. Live.

import { page, t, api, el, clear, clock, duration, age, fail, stream, setStreamState, throttle } from "./common.js";

const $ = (id) => document.getElementById(id);
const state = { queue: [], fetchedAt: 0 };

function offsetIso(offset) {
  // "+0700" -> "+07:00"
  return `${offset.slice(0, 3)}:${offset.slice(3)}`;
}

function periods() {
  const now = new Date();
  const end = now.toISOString();
  const offset = page.utc_offset || "+0700";
  const sign = offset[0] === "-" ? -1 : 1;
  const minutes = sign * (Number(offset.slice(1, 3)) * 60 + Number(offset.slice(3)));
  const local = new Date(now.getTime() + minutes * 60000);
  const day = local.toISOString().slice(0, 10);
  return {
    today: { start: `${day}T00:00:00${offsetIso(offset)}`, end },
    last_hour: { start: new Date(now.getTime() - 3600000).toISOString(), end },
  };
}

function pct(v) {
  return v === null || v === undefined ? "—" : `${(v * 100).toFixed(1)}%`;
}

function target(node, share, goal) {
  clear(node);
  if (share === null || share === undefined) {
    node.textContent = "—";
    return;
  }
  const met = share >= goal;
  node.append(el("span", { class: met ? "met" : "missed" }, `${pct(share)} ${t(met ? "wallboard.met" : "wallboard.missed")}`));
}

function setField(section, field, value, text) {
  const node = section.querySelector(`[data-field="${field}"]`);
  node.dataset.value = value === null || value === undefined ? "" : String(value);
  node.textContent = text;
  return node;
}

async function loadPeriod(name, range) {
  const q = `start=${encodeURIComponent(range.start)}&end=${encodeURIComponent(range.end)}&tz=${encodeURIComponent(page.timezone)}`;
  const [stats, report] = await Promise.all([api("GET", `/v1/stats?${q}`), api("GET", `/v1/reports/incidents?${q}`)]);
  const section = $(`wb-${name}`);
  section.dataset.start = range.start;
  section.dataset.end = range.end;
  section.querySelector(".range").textContent = `${clock(range.start)} – ${clock(range.end)}`;
  const f = stats.total;
  setField(section, "offered", f.offered, String(f.offered));
  setField(section, "answered", f.answered, String(f.answered));
  setField(section, "abandoned", f.abandoned, String(f.abandoned));
  setField(section, "abandon_rate", f.abandon_rate, pct(f.abandon_rate));
  for (const s of ["10s", "15s", "20s"]) setField(section, `within_${s}`, f.answered_within[s], pct(f.answered_within[s]));
  target(section.querySelector('[data-field="eu_10"]'), f.answered_within["10s"], 0.9);
  target(section.querySelector('[data-field="nena_15"]'), f.answered_within["15s"], 0.9);
  target(section.querySelector('[data-field="nena_20"]'), f.answered_within["20s"], 0.95);
  const counts = Object.fromEntries(report.by_classification.map((c) => [c.key, c.incidents]));
  const classified = report.by_classification.filter((c) => c.key !== "unclassified").reduce((a, c) => a + c.incidents, 0);
  const share = (n) => (classified ? n / classified : null);
  setField(section, "prank_share", share(counts.prank || 0), pct(share(counts.prank || 0)));
  setField(section, "silent_share", share(counts.ghost || 0), pct(share(counts.ghost || 0)));
}

async function loadLevels() {
  const p = periods();
  try {
    await Promise.all([loadPeriod("today", p.today), loadPeriod("last_hour", p.last_hour)]);
    document.body.dataset.loaded = String(Date.now());
  } catch (e) {
    fail(e);
  }
}

async function loadQueue() {
  try {
    const q = await api("GET", "/v1/queue");
    state.queue = q.waiting;
    state.fetchedAt = Date.now();
    tick();
  } catch (e) {
    fail(e);
  }
}

async function loadOperators() {
  try {
    const ops = await api("GET", "/v1/operators");
    const table = clear($("wb-operators"));
    for (const o of ops) {
      const s = o.logged_in ? (o.paused ? "paused" : o.state || "idle") : "logged_out";
      table.append(el("tr", { dataset: { extension: o.extension, state: s } },
        el("td", {}, o.extension), el("td", {}, o.name),
        el("td", {}, el("span", { class: "state", dataset: { state: s } }, t(`opstate.${s}`))),
        el("td", {}, o.paused && o.pause_reason ? t(`pause.${o.pause_reason}`) : "")));
    }
  } catch (e) {
    fail(e);
  }
}

async function loadDispatches() {
  try {
    const [sent, failing] = await Promise.all([
      api("GET", "/v1/dispatches?status=sent&limit=50"),
      api("GET", "/v1/webhooks/outbox?status=failing&limit=50"),
    ]);
    $("wb-unacked-count").textContent = String(sent.items.length);
    // Overdue as the operator's screen and the server's watchdog count it: a resend re-arms it.
    const overdue = (d) => (Date.now() - new Date(d.last_resent_at || d.created_at)) / 1000 > page.ack_timeout_s;
    $("wb-unacked-count").classList.toggle("alert", sent.items.some(overdue));
    const list = clear($("wb-unacked"));
    for (const d of sent.items) {
      list.append(el("li", { class: overdue(d) ? "overdue" : "" }, `${t("incident.title", { id: d.incident_id })} → ${d.agency_name} · ${age(d.created_at)}`));
    }
    $("wb-webhooks-count").textContent = String(failing.items.length);
    $("wb-webhooks-count").classList.toggle("alert", failing.items.length > 0);
    const hooks = clear($("wb-webhooks"));
    for (const o of failing.items) {
      hooks.append(el("li", {}, `${o.agency_code} · ${o.attempts}× · ${o.last_error || o.last_status_code || ""}`));
    }
  } catch (e) {
    fail(e);
  }
}

function tick() {
  const since = (Date.now() - state.fetchedAt) / 1000;
  $("wb-waiting").textContent = String(state.queue.length);
  $("wb-waiting").dataset.value = String(state.queue.length);
  const longest = state.queue.reduce((m, w) => Math.max(m, w.wait_s + since), 0);
  $("wb-longest").textContent = duration(longest);
  $("wb-longest").classList.toggle("alert", longest > 15);
  $("wb-clock").textContent = clock(new Date().toISOString());
}

// A surge of events never turns into a surge of requests to the service that answers 112.
const queueSoon = throttle(loadQueue, 2000);
const operatorsSoon = throttle(loadOperators, 2000);
const levelsSoon = throttle(loadLevels, 10000);
const dispatchesSoon = throttle(loadDispatches, 5000);

async function main() {
  stream(
    ["call_offered", "call_answered", "call_abandoned", "call_ended", "operator_state_changed",
      "dispatch_created", "dispatch_status_changed", "dispatch_unacknowledged", "updated"],
    (e) => {
      if (e.kind === "operator_state_changed") operatorsSoon();
      else if (e.kind.startsWith("call_")) {
        queueSoon();
        levelsSoon();
      } else dispatchesSoon();
    },
    setStreamState,
  );
  await Promise.all([loadQueue(), loadLevels(), loadOperators(), loadDispatches()]);
  setInterval(tick, 1000);
  setInterval(() => { loadLevels(); loadDispatches(); }, 30000);
  document.body.dataset.ready = "1";
}

main().catch(fail);
