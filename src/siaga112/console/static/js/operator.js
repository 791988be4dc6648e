// The call-taker's screen: own queue session, the live queue, the screen pop when the
// operator's own phone answers, the incident with its map, dispatch, notes and timeline.
// Keyboard first: every action has a key (`?` lists them).

import {
  page, t, api, el, clear, clock, duration, age, toast, fail, stream, setStreamState, every, mark, throttle,
} from "./common.js";
import { CallMap, sourceLabel } from "./map.js";

const me = page.user.extension;
const $ = (id) => document.getElementById(id);

const state = {
  incidentId: null,
  incident: null,
  dispatches: [],
  agencies: [],
  defaults: {},
  selected: new Set(),
  selectionTouched: false,
  mine: JSON.parse(sessionStorage.getItem("siaga112.mine") || "[]"),
};

let map = null;

// ---------- own queue session ----------

function renderMyState(op) {
  const node = $("my-state");
  let s = "logged_out";
  if (op && op.logged_in) s = op.paused ? "paused" : op.state && op.state !== "logged_out" ? op.state : "idle";
  node.dataset.state = s;
  node.textContent = t(`opstate.${s}`);
  $("my-pause-reason").textContent =
    op && op.paused && op.pause_reason ? t(`pause.${op.pause_reason}`) : "";
  const inQueue = Boolean(op && op.logged_in);
  $("join").disabled = inQueue;
  $("leave").disabled = !inQueue;
  $("pause").disabled = !inQueue || Boolean(op && op.paused);
  $("resume").disabled = !(op && op.paused);
  state.me = op;
}

// Asterisk's word on this operator (operator_state_changed): drawn from the event itself, no
// request per change.
function myStateChanged(d) {
  const op = { ...(state.me || {}), state: d.state };
  if (d.state === "logged_out") op.logged_in = false;
  else op.logged_in = true;
  op.paused = d.state === "paused" || (Boolean(op.paused) && d.state !== "idle");
  if (d.state === "paused") op.pause_reason = d.pause_reason;
  if (d.state === "idle") op.paused = false;
  renderMyState(op);
}

async function loadMyState() {
  if (!me) {
    $("my-state").textContent = t("session.no_extension");
    for (const id of ["join", "pause", "resume", "leave"]) $(id).disabled = true;
    return;
  }
  try {
    renderMyState(await api("GET", `/v1/operators/${me}`));
  } catch (e) {
    fail(e);
  }
}

async function session(action, body) {
  if (!me) return;
  try {
    renderMyState(await api("POST", `/v1/operators/${me}/${action}`, body));
  } catch (e) {
    fail(e);
  }
}

// ---------- live queue ----------
// Drawn from the event stream at once (call_offered adds the caller; answered, abandoned and
// ended take it away) and completed from GET /v1/queue (Asterisk's own list, with flags,
// history and location) at most every QUEUE_FETCH_MS: with many consoles open during a surge,
// a fetch per event would load the very service that answers 112. Keyed by incident.

const QUEUE_FETCH_MS = 2000;
const queue = {
  snapshot: [],
  startedAt: 0, // when the snapshot's request left (epoch ms)
  receivedAt: 0,
  offered: new Map(), // incident id -> caller from call_offered, not yet in a snapshot
  gone: new Map(), // incident id -> when its call stopped waiting
};

async function loadQueue() {
  const startedAt = Date.now();
  const q = await api("GET", "/v1/queue");
  queue.snapshot = q.waiting;
  queue.startedAt = startedAt;
  queue.receivedAt = Date.now();
  // What happened before the request left is in the snapshot (Asterisk's list): forget it.
  for (const [id, at] of queue.gone) if (at < startedAt) queue.gone.delete(id);
  for (const [id, o] of queue.offered) if (o.at < startedAt - 1000) queue.offered.delete(id);
  renderQueue();
}

const refreshQueueSoon = throttle(loadQueue, QUEUE_FETCH_MS);

function queueEntries() {
  const entries = [];
  const listed = new Set();
  for (const w of queue.snapshot) {
    if (w.incident_id && queue.gone.has(w.incident_id)) continue;
    if (w.incident_id) listed.add(w.incident_id);
    entries.push({ ...w, since: queue.receivedAt - w.wait_s * 1000 });
  }
  for (const [id, o] of queue.offered) {
    if (listed.has(id) || queue.gone.has(id)) continue;
    entries.push({
      call_id: o.call_id, incident_id: id, number: o.number, caller: null, priority: null,
      location: null, flag: null, history: null, since: o.at,
    });
  }
  return entries;
}

function offered(e) {
  const d = e.data || {};
  queue.offered.set(e.incident_id, {
    call_id: d.call_id || "",
    number: d.caller_id_available ? d.caller_number : null,
    at: Date.parse(e.at) || Date.now(),
  });
  renderQueue();
  mark("queue", e.incident_id);
  refreshQueueSoon();
}

function stoppedWaiting(e) {
  if (!e.incident_id) return;
  queue.gone.set(e.incident_id, Date.now());
  queue.offered.delete(e.incident_id);
  renderQueue();
}

function renderQueue() {
  const list = clear($("queue"));
  const entries = queueEntries();
  const now = Date.now();
  $("queue-count").textContent = String(entries.length);
  $("queue-empty").hidden = entries.length > 0;
  let longest = 0;
  entries.forEach((w, i) => {
    const wait = (now - w.since) / 1000;
    longest = Math.max(longest, wait);
    const badges = el("span", { class: "badges" });
    if (w.location) {
      badges.append(
        el("span", { class: "badge loc", title: sourceLabel(w.location.source) },
          w.location.lat !== null && w.location.radius_m
            ? `${t("queue.location")} ±${Math.round(w.location.radius_m)} m`
            : `${t("queue.location")}: ${sourceLabel(w.location.source)}`),
      );
    }
    if (w.flag) {
      badges.append(el("span", { class: "badge flag", title: w.flag.reason },
        `${t(`flag.${w.flag.kind}`)}`));
    }
    if (w.history && w.history.calls_total > 1) {
      badges.append(el("span", { class: "badge repeat" },
        t("queue.repeat", { calls: w.history.calls_total, false: w.history.false_calls })));
    }
    if (w.history && w.history.false_calls > 0 && !w.flag) {
      badges.append(el("span", { class: "badge prank" },
        t("queue.false_calls", { n: w.history.false_calls })));
    }
    list.append(
      el("li", { class: "waiting", dataset: { callId: w.call_id || "", incidentId: w.incident_id || "" } },
        el("span", { class: "pos" }, `${i + 1}.`),
        el("span", { class: w.number ? "number" : "number none" }, w.number || w.caller || t("queue.no_number")),
        el("span", { class: "wait" }, duration(wait)),
        w.priority ? el("span", { class: "prio" }, `P${w.priority}`) : null,
        badges,
      ),
    );
  });
  $("queue-longest").textContent = entries.length
    ? t("queue.longest", { wait: duration(longest) })
    : "";
}

// ---------- incident ----------

function rememberMine(id) {
  state.mine = [id, ...state.mine.filter((x) => x !== id)].slice(0, 20);
  sessionStorage.setItem("siaga112.mine", JSON.stringify(state.mine));
  renderMine();
}

function renderMine() {
  const list = clear($("my-incidents"));
  for (const id of state.mine) {
    list.append(el("li", {},
      el("a", { href: `#incident-${id}`, onclick: (ev) => { ev.preventDefault(); openIncident(id); } },
        t("incident.title", { id }))));
  }
}

async function openIncident(id, popped) {
  state.incidentId = id;
  state.selectionTouched = false;
  state.selected = new Set();
  rememberMine(id);
  // replaceState, not location.hash: no history entry per call, no reload of the icon.
  history.replaceState(null, "", `#incident-${id}`);
  if (popped) {
    // The pop opens at once with what the event and the queue already hold (which incident,
    // which number); the incident's brief read (its fields and calls, one statement, nothing
    // to audit) draws the panel; the full read adds the map, the timeline and the caller's
    // history right after.
    drawPending(id);
    mark("pop_open", id);
    state.popping = id;
    state.staleWhilePopping = false;
    if (await loadBrief(id)) mark("pop", id);
  }
  // A popped call's incident is new: its dispatches are read after it is drawn, not before.
  const drawn = await loadIncident(!popped);
  if (popped && state.popping === id) {
    state.popping = null;
    // Events of this incident that came while its reads were under way: read it once more
    // (without the caller's history), not once per event nor with the history again.
    if (state.staleWhilePopping && drawn) reloadIncidentSoon();
  }
  $("incident").hidden = false;
  $("incident-none").hidden = true;
  if (popped && drawn) {
    mark("pop_full", id);
    reloadDispatchesSoon();
  }
  map && map.invalidate();
}

// The panel from GET /v1/incidents/{id}/brief; true once drawn for the incident still open.
// Its locations, timeline and caller history are marked as still loading (`partial`).
async function loadBrief(id) {
  try {
    const brief = await api("GET", `/v1/incidents/${id}/brief`);
    if (id !== state.incidentId) return false;
    if (state.incident && state.incident.id === id) return true; // a full read came first
    state.incident = { ...brief, locations: [], timeline: [], best_location: null, caller_history: null, partial: true };
    renderIncident();
    return true;
  } catch (e) {
    fail(e);
    return false;
  }
}

// The incident panel emptied for incident `id`, its number from the queue if it was there:
// nothing of the previous incident stays on the screen while the new one is read.
function drawPending(id) {
  const entry = queueEntries().find((w) => w.incident_id === id);
  state.incident = null;
  state.dispatches = [];
  $("incident").hidden = false;
  $("incident-none").hidden = true;
  $("inc-title").textContent = t("incident.title", { id });
  $("inc-status").textContent = "";
  const number = entry && (entry.number || entry.caller);
  const caller = clear($("inc-caller"));
  caller.append(el("span", { class: number ? "number" : "number none" }, number || t("queue.no_number")));
  $("inc-callback").textContent = "";
  clear($("inc-history"));
  $("inc-kecamatan").textContent = "—";
  for (const f of ["inc-classification", "inc-category", "inc-priority", "inc-address", "inc-landmark", "inc-summary"]) {
    setValue($(f), null);
  }
  clear($("locations"));
  clear($("timeline"));
  clear($("dispatch-list"));
  map && map.show([]);
}

// Events of the open incident come in bursts (answered, located, recorded, ended): one read
// of the incident per 500 ms at most, and its dispatches only when a dispatch changed.
// The caller's history was read with the incident when it opened: a re-read leaves it out
// (the heaviest part of the read, and nothing during the call changes it).
async function reloadIncident() {
  const id = state.incidentId;
  if (!id) return;
  if (state.popping === id) {
    state.staleWhilePopping = true; // the pop's own full read is on its way
    return;
  }
  // The caller's history only once the full read brought it (not after the pop's brief alone).
  const known = state.incident && state.incident.id === id && !state.incident.partial ? state.incident : null;
  const inc = await api("GET", `/v1/incidents/${id}${known ? "?caller_history=false" : ""}`);
  if (id !== state.incidentId) return;
  if (known) inc.caller_history = known.caller_history;
  state.incident = inc;
  renderIncident();
}

async function reloadDispatches() {
  const id = state.incidentId;
  if (!id) return;
  const dispatches = await api("GET", `/v1/incidents/${id}/dispatches`);
  if (id !== state.incidentId) return;
  state.dispatches = dispatches;
  if (state.incident) renderIncident();
}

const reloadIncidentSoon = throttle(reloadIncident, 500);
const reloadDispatchesSoon = throttle(reloadDispatches, 500);

// True once this incident is on the screen (false when another one was opened meanwhile).
async function loadIncident(withDispatches = true) {
  const id = state.incidentId;
  if (!id) return false;
  try {
    const [inc, dispatches] = await Promise.all([
      api("GET", `/v1/incidents/${id}`),
      withDispatches ? api("GET", `/v1/incidents/${id}/dispatches`) : [],
    ]);
    if (id !== state.incidentId) return false;
    state.incident = inc;
    state.dispatches = dispatches;
    renderIncident();
    return true;
  } catch (e) {
    fail(e);
    return false;
  }
}

function setValue(node, value) {
  // Never overwrite what the operator is typing.
  if (document.activeElement !== node) node.value = value === null || value === undefined ? "" : String(value);
}

function renderIncident() {
  const inc = state.incident;
  $("inc-title").textContent = t("incident.title", { id: inc.id });
  $("inc-status").textContent = t(`status.${inc.status}`);
  $("inc-status").dataset.status = inc.status;
  const call = inc.calls.length ? inc.calls[inc.calls.length - 1] : null;
  const caller = clear($("inc-caller"));
  if (call) {
    caller.append(
      el("span", { class: call.caller_id_available ? "number" : "number none" },
        call.caller_e164 || call.caller_number || t("queue.no_number")),
    );
    if (call.caller_name) caller.append(" ", el("span", { class: "display-name" }, `“${call.caller_name}”`));
  } else {
    caller.append(inc.caller_number || t("queue.no_number"));
    if (inc.caller_name) caller.append(" ", el("span", { class: "display-name" }, inc.caller_name));
  }
  $("inc-callback").textContent =
    (call && (call.asserted_number || call.caller_e164)) || inc.caller_number || t("incident.no_callback");
  const hist = clear($("inc-history"));
  const h = inc.caller_history;
  if (inc.partial) {
    hist.append(el("span", { class: "muted" }, t("incident.loading")));
  } else if (h) {
    hist.append(t("history.summary", { calls: h.calls_total, incidents: h.incidents_total }));
    for (const [k, n] of Object.entries(h.classifications || {})) {
      if (!n) continue;
      hist.append(" ", el("span", { class: `badge cls-${k}` }, `${t(`classification.${k}`)} ${n}`));
    }
  } else {
    hist.append(t("history.none"));
  }
  $("inc-kecamatan").textContent = inc.kecamatan || "—";
  setValue($("inc-classification"), inc.classification);
  setValue($("inc-category"), inc.category);
  setValue($("inc-priority"), inc.priority);
  setValue($("inc-address"), inc.address);
  setValue($("inc-landmark"), inc.landmark);
  setValue($("inc-summary"), inc.summary);
  renderLocations();
  renderAgencies();
  renderDispatches();
  renderCallActions();
  renderTimeline();
}

// A timeline line's status: an incident's change is {from, to}, a dispatch's a plain name.
function statusChange(status) {
  const label = (s) => (t(`status.${s}`) !== `status.${s}` ? t(`status.${s}`) : String(s));
  if (status && typeof status === "object") return `${label(status.from)} → ${label(status.to)}`;
  return label(status);
}

function renderTimeline() {
  const list = clear($("timeline"));
  for (const e of [...state.incident.timeline].reverse()) {
    let detail = "";
    if (e.kind === "note") detail = e.data.text || "";
    else if (e.data && e.data.status) detail = statusChange(e.data.status);
    else if (e.data && e.data.agency) detail = e.data.agency;
    else if (e.data && e.data.operator) detail = e.data.operator;
    list.append(el("li", { dataset: { kind: e.kind } },
      el("time", {}, clock(e.at)), " ",
      el("span", { class: "kind" }, t(`event.${e.kind}`) !== `event.${e.kind}` ? t(`event.${e.kind}`) : e.kind), " ",
      el("span", { class: "actor" }, e.actor), detail ? " — " : "",
      detail ? el("span", { class: "detail" }, detail) : null));
  }
}

// ---------- locations ----------

function renderLocations() {
  const locs = state.incident.locations;
  const list = clear($("locations"));
  if (state.incident.partial) {
    // Drawn with the full read, right after the pop: the map keeps what it shows until then.
    $("map-note").textContent = t("incident.loading");
    return;
  }
  map && map.show(locs);
  $("map-note").textContent = locs.length ? "" : t("map.no_location");
  locs.forEach((loc, i) => {
    const has = loc.lat !== null && loc.lon !== null;
    list.append(el("li", { class: loc.confirmed ? "confirmed" : "", dataset: { id: loc.id } },
      el("span", { class: "idx" }, `${i + 1}.`), " ",
      el("strong", {}, sourceLabel(loc.source)), " ",
      has ? `±${Math.round(loc.radius_m || 0)} m` : t("map.no_coordinates"), " · ",
      t("map.age", { age: age(loc.observed_at) }),
      loc.address ? el("div", { class: "small" }, loc.address) : null,
      loc.confirmed
        ? el("span", { class: "badge confirmed" }, t("map.confirmed"))
        : has
          ? el("button", { type: "button", class: "use", onclick: () => confirmLocation(loc.id) }, t("map.use"))
          : null));
  });
}

async function confirmLocation(id) {
  try {
    await api("POST", `/v1/locations/${id}/confirm`);
    toast(t("map.confirmed_toast"));
    await loadIncident();
  } catch (e) {
    fail(e);
  }
}

// ---------- fields ----------

async function patch(body) {
  if (!state.incidentId) return;
  try {
    state.incident = { ...state.incident, ...(await api("PATCH", `/v1/incidents/${state.incidentId}`, body)) };
    await loadIncident();
  } catch (e) {
    fail(e);
  }
}

function bindFields() {
  $("inc-classification").addEventListener("change", (ev) => ev.target.value && patch({ classification: ev.target.value }));
  $("inc-category").addEventListener("change", (ev) => {
    state.selectionTouched = false;
    if (ev.target.value) patch({ category: ev.target.value });
  });
  $("inc-priority").addEventListener("change", (ev) => patch({ priority: Number(ev.target.value) }));
  for (const [id, field] of [["inc-address", "address"], ["inc-landmark", "landmark"], ["inc-summary", "summary"]]) {
    $(id).addEventListener("keydown", (ev) => {
      if (ev.key === "Enter") {
        ev.preventDefault();
        const v = ev.target.value.trim();
        if (v) patch({ [field]: v });
        ev.target.blur();
      }
    });
    $(id).addEventListener("change", (ev) => {
      const v = ev.target.value.trim();
      if (v && v !== (state.incident && state.incident[field])) patch({ [field]: v });
    });
  }
  $("note-text").addEventListener("keydown", async (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey) {
      ev.preventDefault();
      const text = ev.target.value.trim();
      if (!text || !state.incidentId) return;
      try {
        await api("POST", `/v1/incidents/${state.incidentId}/notes`, { text });
        ev.target.value = "";
        ev.target.blur();
        await loadIncident();
      } catch (e) {
        fail(e);
      }
    }
  });
}

// ---------- dispatch ----------

async function loadAgencies() {
  try {
    const [agencies, defaults] = await Promise.all([
      api("GET", "/v1/agencies?active=true"),
      api("GET", "/v1/dispatch-defaults"),
    ]);
    state.agencies = agencies;
    state.defaults = Object.fromEntries(defaults.map((d) => [d.category, d.agencies]));
  } catch (e) {
    fail(e);
  }
}

function renderAgencies() {
  const box = clear($("dispatch-agencies"));
  const inc = state.incident;
  if (!state.selectionTouched) {
    state.selected = new Set(inc && inc.category ? state.defaults[inc.category] || [] : []);
  }
  const active = new Set(state.dispatches.filter((d) => !["completed", "declined"].includes(d.status)).map((d) => d.agency_code));
  for (const a of state.agencies) {
    const id = `agency-${a.code}`;
    box.append(el("label", { class: active.has(a.code) ? "agency sent" : "agency", for: id },
      el("input", {
        type: "checkbox", id, value: a.code, checked: state.selected.has(a.code) || active.has(a.code),
        disabled: active.has(a.code),
        onchange: (ev) => {
          state.selectionTouched = true;
          if (ev.target.checked) state.selected.add(a.code);
          else state.selected.delete(a.code);
        },
      }), " ", a.name));
  }
  if (!state.agencies.length) box.append(el("p", { class: "muted" }, t("dispatch.no_agencies")));
}

// The acknowledgement timer counts from the first send (what the agency is measured on); the
// overdue alert from the last resend (a resend re-arms it, as the server's watchdog does).
function dispatchTiming(d, now) {
  const waited = (now - new Date(d.created_at).getTime()) / 1000;
  const armedAt = new Date(d.last_resent_at || d.created_at).getTime();
  const overdue = d.status === "sent" && (now - armedAt) / 1000 > page.ack_timeout_s;
  return { waited, overdue };
}

// Drawn when the dispatches change; the timers and overdue marks are updated in place every
// second (tickDispatches), so that a focused resend button survives the clock.
function renderDispatches() {
  const list = clear($("dispatch-list"));
  const now = Date.now();
  for (const d of state.dispatches) {
    const { waited, overdue } = dispatchTiming(d, now);
    const waiting = d.status === "sent";
    list.append(el("li", { class: overdue ? "overdue" : "", dataset: { id: d.id, agency: d.agency_code, status: d.status } },
      el("strong", {}, d.agency_name), " ",
      el("span", { class: `badge dstatus-${d.status}` }, t(`dstatus.${d.status}`)), " ",
      waiting
        ? el("span", { class: "timer", dataset: { since: d.created_at } }, t("dispatch.waiting", { wait: duration(waited) }))
        : d.acknowledged_at
          ? el("span", { class: "muted" }, t("dispatch.acked_after", { wait: duration((new Date(d.acknowledged_at) - new Date(d.created_at)) / 1000) }))
          : null,
      el("span", { class: "badge alert", hidden: !overdue }, t("dispatch.overdue")),
      d.resend_count ? el("span", { class: "badge resent" }, t("dispatch.resent", { n: d.resend_count, at: clock(d.last_resent_at) })) : null,
      waiting
        ? el("button", { type: "button", class: overdue ? "resend urgent" : "resend", onclick: () => resend(d) }, t("dispatch.resend"))
        : null,
      d.status === "declined" && d.decline_reason ? el("div", { class: "small" }, d.decline_reason) : null));
  }
}

function tickDispatches() {
  const now = Date.now();
  for (const d of state.dispatches) {
    if (d.status !== "sent") continue;
    const li = $("dispatch-list").querySelector(`li[data-id="${Number(d.id)}"]`);
    if (!li) continue;
    const { waited, overdue } = dispatchTiming(d, now);
    const timer = li.querySelector(".timer");
    if (timer) timer.textContent = t("dispatch.waiting", { wait: duration(waited) });
    li.classList.toggle("overdue", overdue);
    const alert = li.querySelector(".badge.alert");
    if (alert) alert.hidden = !overdue;
    const button = li.querySelector("button.resend");
    if (button) button.classList.toggle("urgent", overdue);
  }
}

// Dispatches with a resend on its way: a double click, or U and a click, sends one, not two.
const resending = new Set();

async function resend(d) {
  if (resending.has(d.id)) return;
  resending.add(d.id);
  for (const b of document.querySelectorAll(`#dispatch-list li[data-id="${Number(d.id)}"] button.resend`)) b.disabled = true;
  try {
    const out = await api("POST", `/v1/dispatches/${d.id}/resend`);
    toast(t("dispatch.resent_toast", { agency: out.agency_name, n: out.resend_count }));
    await loadIncident(); // the dispatches, and the resend's line on the timeline
  } catch (e) {
    fail(e);
    reloadDispatchesSoon();
  } finally {
    resending.delete(d.id);
  }
}

// U: resend one of the dispatches still waiting for their acknowledgement, overdue ones first.
function chooseResend() {
  const now = Date.now();
  const waiting = state.dispatches
    .filter((d) => d.status === "sent")
    .map((d) => ({ d, ...dispatchTiming(d, now) }))
    .sort((a, b) => Number(b.overdue) - Number(a.overdue) || b.waited - a.waited);
  if (!waiting.length) { toast(t("dispatch.none_waiting")); return; }
  openChooser(t("dispatch.resend"), waiting.map(({ d, waited, overdue }) => ({
    value: d,
    label: `${d.agency_name} · ${t("dispatch.waiting", { wait: duration(waited) })}${overdue ? ` · ${t("dispatch.overdue")}` : ""}`,
  })), (d) => resend(d));
}

async function dispatchNow() {
  if (!state.incident) return;
  const codes = [...state.selected];
  const body = codes.length ? { agencies: codes } : { agencies: "defaults" };
  try {
    const out = await api("POST", `/v1/incidents/${state.incidentId}/dispatches`, body);
    toast(t("dispatch.sent_toast", { n: out.items.length }));
    state.selectionTouched = false;
    await loadIncident();
  } catch (e) {
    fail(e);
  }
}

// ---------- call control, flag, callbacks ----------

function liveCall() {
  const inc = state.incident;
  if (!inc) return null;
  return [...inc.calls].reverse().find((c) => !c.ended_at && c.state !== "ended" && c.state !== "abandoned") || null;
}

function callerNumber() {
  const inc = state.incident;
  const call = inc && inc.calls.length ? inc.calls[inc.calls.length - 1] : null;
  return (call && (call.asserted_number || call.caller_e164)) || (inc && inc.caller_number) || null;
}

function renderCallActions() {
  const call = liveCall();
  $("hangup").disabled = !call;
  $("transfer").disabled = !call;
  const select = clear($("transfer-agency"));
  for (const a of state.agencies.filter((x) => x.phone)) select.append(el("option", { value: a.id }, a.name));
  const number = callerNumber();
  for (const id of ["flag-kind", "flag-hours", "flag-reason", "flag-send"]) $(id).disabled = !number;
}

async function hangup() {
  const call = liveCall();
  if (!call) return;
  try {
    await api("POST", `/v1/calls/${call.id}/hangup`);
    toast(t("call.hung_up"));
    reloadIncidentSoon();
  } catch (e) {
    fail(e);
  }
}

async function transfer(agencyId) {
  const call = liveCall();
  if (!call) return;
  try {
    await api("POST", `/v1/calls/${call.id}/transfer`, { agency_id: Number(agencyId) });
    toast(t("call.transferred"));
    reloadIncidentSoon();
  } catch (e) {
    fail(e);
  }
}

async function flagNumber() {
  const number = callerNumber();
  const reason = $("flag-reason").value.trim();
  if (!number) return;
  if (!reason) {
    $("flag-reason").focus();
    toast(t("flag.reason_needed"), "error");
    return;
  }
  try {
    await api("POST", "/v1/number-flags", { number, kind: $("flag-kind").value, reason, hours: Number($("flag-hours").value) });
    $("flag-reason").value = "";
    $("flag-reason").blur();
    toast(t("flag.done", { number }));
  } catch (e) {
    fail(e);
  }
}

async function loadCallbacks() {
  try {
    const out = await api("GET", "/v1/callbacks?status=pending&limit=20");
    const list = clear($("callbacks"));
    $("callbacks-count").textContent = String(out.items.length);
    $("callbacks-anonymous").textContent = out.anonymous ? t("callbacks.anonymous", { n: out.anonymous }) : "";
    for (const c of out.items) {
      list.append(el("li", { dataset: { callId: c.call_id } },
        el("span", { class: "number" }, c.number), " ",
        el("span", { class: "badge" }, t(`callbacks.${c.reason}`)), " ",
        el("span", { class: "muted small" }, clock(c.offered_at)), " ",
        me ? el("button", { type: "button", class: "callback", onclick: () => callBack(c) }, t("callbacks.call")) : null));
    }
  } catch (e) {
    fail(e);
  }
}

const loadCallbacksSoon = throttle(loadCallbacks, 5000);

async function callBack(c) {
  try {
    await api("POST", `/v1/callbacks/${c.call_id}/call`, { operator_extension: me });
    toast(t("callbacks.ringing", { number: c.number }));
    if (c.incident_id) openIncident(c.incident_id);
    loadCallbacks();
  } catch (e) {
    fail(e);
  }
}

// ---------- close ----------

async function closeIncident() {
  const inc = state.incident;
  if (!inc) return;
  try {
    let status = inc.status;
    // Dispatched incidents are resolved first (the lifecycle has no direct step to closed).
    if (!inc.allowed_statuses.includes("closed") && inc.allowed_statuses.includes("resolved")) {
      await api("PATCH", `/v1/incidents/${inc.id}`, { status: "resolved" });
      status = "resolved";
    }
    if (status !== "closed") await api("PATCH", `/v1/incidents/${inc.id}`, { status: "closed" });
    toast(t("incident.closed_toast", { id: inc.id }));
    await loadIncident();
  } catch (e) {
    fail(e);
  }
}

// ---------- keyboard ----------

let chooser = null;

function openChooser(title, options, onPick) {
  const box = $("chooser");
  $("chooser-h").textContent = title;
  const list = clear($("chooser-list"));
  options.forEach((o, i) => list.append(el("li", {}, el("kbd", {}, String((i + 1) % 10)), " ", o.label)));
  box.hidden = false;
  chooser = { options, onPick };
}

function closeChooser() {
  $("chooser").hidden = true;
  chooser = null;
}

function typing(target) {
  return target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA" || target.tagName === "SELECT");
}

function onKey(ev) {
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
  if (ev.key === "Escape") {
    closeChooser();
    $("help").hidden = true;
    if (typing(document.activeElement)) document.activeElement.blur();
    return;
  }
  if (chooser) {
    const n = ev.key === "0" ? 10 : Number(ev.key);
    if (Number.isInteger(n) && n >= 1 && n <= chooser.options.length) {
      ev.preventDefault();
      const pick = chooser.options[n - 1];
      const fn = chooser.onPick;
      closeChooser();
      fn(pick.value);
    } else if (ev.key === "Enter" && chooser.options.length === 1) {
      ev.preventDefault();
      const fn = chooser.onPick;
      const v = chooser.options[0].value;
      closeChooser();
      fn(v);
    }
    return;
  }
  if (typing(ev.target)) return;
  const key = ev.key.toLowerCase();
  const inc = state.incident;
  const actions = {
    "?": () => { $("help").hidden = !$("help").hidden; },
    j: () => session("login"),
    b: () => openChooser(t("session.pause"), page.pause_reasons.map((r) => ({ value: r, label: t(`pause.${r}`) })),
      (reason) => session("pause", { reason })),
    r: () => session("resume"),
    k: () => inc && openChooser(t("incident.classification"), page.classifications.map((c) => ({ value: c, label: t(`classification.${c}`) })),
      (v) => patch({ classification: v })),
    c: () => inc && openChooser(t("incident.category"), page.categories.map((c) => ({ value: c, label: t(`category.${c}`) })),
      (v) => { state.selectionTouched = false; patch({ category: v }); }),
    p: () => inc && openChooser(t("incident.priority"), [1, 2, 3, 4, 5].map((p) => ({ value: p, label: t(`priority.${p}`) })),
      (v) => patch({ priority: v })),
    a: () => inc && $("inc-address").focus(),
    m: () => inc && $("inc-landmark").focus(),
    n: () => inc && $("note-text").focus(),
    l: () => {
      if (!inc) return;
      const locs = inc.locations.filter((l) => l.lat !== null && l.lon !== null);
      if (!locs.length) { toast(t("map.no_location")); return; }
      openChooser(t("map.choose"), locs.map((l) => ({
        value: l.id,
        label: `${sourceLabel(l.source)} ±${Math.round(l.radius_m || 0)} m · ${t("map.age", { age: age(l.observed_at) })}${l.confirmed ? ` (${t("map.confirmed")})` : ""}`,
      })), (id) => confirmLocation(id));
    },
    d: () => inc && dispatchNow(),
    u: () => inc && chooseResend(),
    h: () => inc && liveCall() && openChooser(t("call.hangup_confirm"), [{ value: true, label: t("call.hangup") }], () => hangup()),
    t: () => {
      if (!inc || !liveCall()) return;
      const agencies = state.agencies.filter((a) => a.phone);
      openChooser(t("call.transfer_to"), agencies.map((a) => ({ value: a.id, label: a.name })), (id) => transfer(id));
    },
    f: () => inc && callerNumber() && $("flag-reason").focus(),
    x: () => inc && openChooser(t("incident.close_confirm", { id: inc.id }), [{ value: true, label: t("incident.close") }], () => closeIncident()),
  };
  const fn = actions[key] || actions[ev.key];
  if (fn) {
    ev.preventDefault();
    fn();
  }
}

// ---------- live events ----------

function onEvent(e) {
  switch (e.kind) {
    case "operator_state_changed":
      if (e.data && e.data.extension === me) myStateChanged(e.data);
      return;
    case "call_answered":
      stoppedWaiting(e);
      // Screen pop: the operator's own phone answered this call.
      if (me && e.data && e.data.operator === me && e.incident_id && e.incident_id !== state.incidentId) {
        openIncident(e.incident_id, true);
        return;
      }
      break;
    case "call_abandoned":
      stoppedWaiting(e);
      loadCallbacksSoon();
      break;
    case "location_added":
      refreshQueueSoon();
      // A new fix never replaces the confirmed one: it is added to the list, and said.
      if (e.incident_id && e.incident_id === state.incidentId) {
        const d = e.data || {};
        toast(t("map.new_fix", { source: sourceLabel(d.source), radius: Math.round(d.radius_m || 0) }));
      }
      break;
    case "call_offered":
      if (e.incident_id) offered(e);
      break;
    case "call_ended":
      stoppedWaiting(e);
      break;
    case "callback_result":
    case "callback_attempted":
    case "callback_dismissed":
      loadCallbacksSoon();
      break;
    default:
      break;
  }
  if (e.incident_id && e.incident_id === state.incidentId) {
    if (e.kind.startsWith("dispatch_")) reloadDispatchesSoon();
    else reloadIncidentSoon();
  }
}

function tick() {
  renderQueue();
  if (state.incident) tickDispatches();
}

async function main() {
  map = new CallMap($("map"));
  bindFields();
  $("join").addEventListener("click", () => session("login"));
  $("leave").addEventListener("click", () => session("logout"));
  $("pause").addEventListener("click", () => session("pause", { reason: $("pause-reason").value }));
  $("resume").addEventListener("click", () => session("resume"));
  $("dispatch-send").addEventListener("click", dispatchNow);
  $("close-incident").addEventListener("click", closeIncident);
  $("hangup").addEventListener("click", hangup);
  $("transfer").addEventListener("click", () => transfer($("transfer-agency").value));
  $("flag-send").addEventListener("click", flagNumber);
  $("flag-reason").addEventListener("keydown", (ev) => {
    if (ev.key === "Enter") { ev.preventDefault(); flagNumber(); }
  });
  document.addEventListener("keydown", onKey);
  renderMine();
  stream(
    ["call_offered", "call_answered", "call_abandoned", "call_ended", "operator_state_changed",
      "location_added", "location_confirmed", "updated", "status_changed", "note",
      "dispatch_created", "dispatch_status_changed", "dispatch_unacknowledged", "dispatch_resent",
      "callback_attempted", "callback_result", "callback_dismissed"],
    onEvent,
    (s) => {
      setStreamState(s);
      if (s === "live") { loadQueue().catch(fail); loadMyState(); }
    },
  );
  await Promise.all([loadAgencies(), loadQueue(), loadMyState(), loadCallbacks()]);
  setInterval(loadCallbacks, 30000);
  const m = /^#incident-(\d+)$/.exec(window.location.hash);
  if (m) await openIncident(Number(m[1]));
  every(1000, tick);
  document.body.dataset.ready = "1";
}

main().catch(fail);
