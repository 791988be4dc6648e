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
  resetLive();
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
    if (await readBrief(id)) mark("pop", id);
  }
  // A popped call's incident is new: its dispatches are read after it is drawn, not before,
  // and only when its timeline has a dispatch on it.
  const need = await loadIncident(!popped);
  if (popped && state.popping === id) {
    state.popping = null;
    // Events of this incident that came while its reads were under way were applied as they
    // landed; a read they still need (a new fix's audited location list) is asked for now,
    // once, not once per event.
    if (need) want(need);
  }
  $("incident").hidden = false;
  $("incident-none").hidden = true;
  if (popped && need) {
    mark("pop_full", id);
    if (mayHaveDispatches(state.incident)) reloadDispatchesSoon();
  }
  map && map.invalidate();
}

// A new incident has dispatches only once its timeline says so: every dispatch writes its
// dispatch_created line, and timelines are never purged (its `created` line shows it is whole).
function mayHaveDispatches(inc) {
  if (!inc || !inc.timeline.some((e) => e.kind === "created")) return true;
  return inc.timeline.some((e) => e.kind.startsWith("dispatch_"));
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
  shownLocations = null;
  map && map.show([]);
}

// ---------- the open incident, kept current by its own events ----------
// The panel is drawn from reads (the brief on a pop, the whole case file once when the
// incident opens, the audited location list when a fix arrives) and then kept current by the
// incident's own events on the stream, with no read: a timeline line, a call answered or
// ended, a changed field, a confirmed location. A read is asked for only where the event
// cannot carry it: a new fix (the map's data comes with its audited read), a call the page
// has not seen, a status change (the statuses the operator may move to next).
//
// Every read is stamped with how many of the incident's events the page had received when it
// left. A part of the panel (fields, calls, locations, caller history) is replaced only by a
// read that left after the one it shows; the events received after a read left are applied
// again on top of what it brought (applying an event twice changes nothing); timeline lines
// are merged by id, never dropped.

const LOG_MAX = 500;
const PART_KEYS = new Set(["calls", "locations", "best_location", "timeline", "caller_history", "partial"]);
// Fields an `updated` or `status_changed` line changes ({field: {from, to}}): these only.
const EVENT_FIELDS = ["status", "category", "classification", "priority", "address", "landmark", "summary", "duplicate_of_id"];
const CALL_RANK = { offered: 0, queued: 1, ringing: 2, answered: 3, ended: 4, abandoned: 4 };
const CALL_EVENTS = { call_answered: "answered", call_ended: "ended", call_abandoned: "abandoned" };

const live = {
  seq: 0, // events of the open incident received
  log: [], // [{seq, e}], the last LOG_MAX of them
  shown: {}, // part -> stamp of the read it shows
  asked: {}, // part -> stamp of the latest read of it sent
};
let shownLocations = null; // the array the map was drawn from

function resetLive() {
  live.seq = 0;
  live.log = [];
  live.shown = {};
  live.asked = {};
}

// A read of `parts` leaves now: its stamp.
function leaving(parts) {
  for (const p of parts) live.asked[p] = Math.max(live.asked[p] ?? -1, live.seq);
  return live.seq;
}

function mergeTimeline(lines, more) {
  const byId = new Map(lines.map((e) => [e.id, e]));
  for (const e of more) {
    if (!byId.has(e.id)) byId.set(e.id, { id: e.id, at: e.at, actor: e.actor, kind: e.kind, data: e.data || {} });
  }
  return [...byId.values()].sort((a, b) => a.id - b.id);
}

// Applies one of the incident's events to `inc` (a copy of the incident, changed in place);
// the reads it needs, as {brief, locations} set to the event's number.
function applyEvent(inc, e, seq, need) {
  const d = e.data && typeof e.data === "object" ? e.data : {};
  inc.timeline = mergeTimeline(inc.timeline, [e]);
  const has = (k) => Object.prototype.hasOwnProperty.call(d, k);
  if (e.kind === "updated" || e.kind === "status_changed") {
    for (const f of EVENT_FIELDS) {
      const change = has(f) ? d[f] : null;
      if (!change || typeof change !== "object" || !Object.prototype.hasOwnProperty.call(change, "to")) continue;
      // The statuses allowed next come with the brief read.
      if (f === "status" && inc.status !== change.to) need.brief = seq;
      inc[f] = change.to;
    }
  } else if (e.kind === "kecamatan_changed") {
    if (has("to")) inc.kecamatan = d.to;
  } else if (e.kind === "call_offered" || CALL_EVENTS[e.kind]) {
    const i = inc.calls.findIndex((c) => c.uniqueid === d.uniqueid);
    if (i < 0) {
      need.brief = seq; // a call the page has not seen
    } else if (CALL_EVENTS[e.kind]) {
      const to = CALL_EVENTS[e.kind];
      const call = { ...inc.calls[i] };
      if ((CALL_RANK[call.state] ?? 0) < CALL_RANK[to]) call.state = to;
      if (to === "answered") {
        call.answered_at = call.answered_at || e.at;
        if (d.operator) call.operator = d.operator;
      } else {
        call.ended_at = call.ended_at || e.at;
        if (d.outcome) call.outcome = d.outcome;
      }
      inc.calls = inc.calls.map((c, j) => (j === i ? call : c));
    }
  } else if (e.kind === "location_added") {
    need.locations = seq; // the map's data comes with its audited read
  } else if (e.kind === "location_confirmed") {
    const i = inc.locations.findIndex((l) => l.id === d.location_id);
    if (i < 0) need.locations = seq;
    else if (!inc.locations[i].confirmed) {
      inc.locations = inc.locations.map((l, j) =>
        j === i ? { ...l, confirmed: true, confirmed_by: e.actor, confirmed_at: e.at } : l);
    }
  }
  return need;
}

// What a read stamped `stamp` brought for incident `id`, for `parts` of the panel: the reads
// still needed ({} for none), or null once another incident is open.
function land(id, stamp, read, parts) {
  if (id !== state.incidentId) return null;
  const cur = state.incident && state.incident.id === id ? state.incident : null;
  const inc = cur
    ? { ...cur }
    : { id, calls: [], locations: [], best_location: null, timeline: [], caller_history: null, partial: true };
  for (const part of parts) {
    if ((live.shown[part] ?? -1) > stamp) continue;
    live.shown[part] = stamp;
    if (part === "fields") {
      for (const [k, v] of Object.entries(read)) if (!PART_KEYS.has(k)) inc[k] = v;
    } else if (part === "calls") {
      inc.calls = read.calls;
    } else if (part === "locations") {
      inc.locations = read.locations;
      inc.best_location = read.best_location ?? null;
    } else if (part === "history") {
      inc.caller_history = read.caller_history ?? null;
      inc.partial = false;
    }
  }
  if (read.timeline) inc.timeline = mergeTimeline(inc.timeline, read.timeline);
  const need = {};
  for (const { seq, e } of live.log) if (seq > stamp) applyEvent(inc, e, seq, need);
  state.incident = inc;
  return need;
}

// Asks for the reads `need` names, unless one that left after the event is on its way.
function want(need) {
  if (need.brief !== undefined && (live.asked.fields ?? -1) < need.brief) readBriefSoon();
  if (need.locations !== undefined && (live.asked.locations ?? -1) < need.locations) readLocationsSoon();
}

// An event of the open incident, from the stream.
function ownEvent(e) {
  if (e.kind.startsWith("dispatch_")) reloadDispatchesSoon();
  live.seq += 1;
  live.log.push({ seq: live.seq, e });
  if (live.log.length > LOG_MAX) live.log.splice(0, live.log.length - LOG_MAX);
  const inc = state.incident;
  // Before the first read has landed there is nothing to apply it to: the read applies it.
  if (!inc || inc.id !== e.incident_id) return;
  const next = { ...inc };
  const need = applyEvent(next, e, live.seq, {});
  state.incident = next;
  renderIncident();
  // While the pop's reads are under way, what they do not bring is asked for once they land.
  if (state.popping !== e.incident_id) want(need);
}

// The incident's fields and calls (GET /v1/incidents/{id}/brief: one statement, nothing about
// where the caller is, so nothing to audit); true once drawn for the incident still open.
async function readBrief(id = state.incidentId) {
  if (!id) return false;
  try {
    const stamp = leaving(["fields", "calls"]);
    const brief = await api("GET", `/v1/incidents/${id}/brief`);
    const need = land(id, stamp, brief, ["fields", "calls"]);
    if (!need) return false;
    renderIncident();
    if (state.popping !== id) want(need);
    return true;
  } catch (e) {
    fail(e);
    return false;
  }
}

// The incident's locations (GET /v1/incidents/{id}/locations, audited as every read of them).
async function readLocations() {
  const id = state.incidentId;
  if (!id) return;
  const stamp = leaving(["locations"]);
  const out = await api("GET", `/v1/incidents/${id}/locations`);
  const need = land(id, stamp, { locations: out.items, best_location: out.best }, ["locations"]);
  if (!need) return;
  renderIncident();
  want(need);
}

async function reloadDispatches() {
  const id = state.incidentId;
  if (!id) return;
  const dispatches = await api("GET", `/v1/incidents/${id}/dispatches`);
  if (id !== state.incidentId) return;
  state.dispatches = dispatches;
  if (state.incident) renderIncident();
}

// Events of the open incident come in bursts (answered, located, ended): one read of each kind
// per 500 ms at most.
const readBriefSoon = throttle(() => readBrief(), 500);
const readLocationsSoon = throttle(readLocations, 500);
const reloadDispatchesSoon = throttle(reloadDispatches, 500);

// The whole case file (GET /v1/incidents/{id}: calls, locations, timeline, caller history),
// read once when an incident opens. The reads still needed ({} for none) once it is on the
// screen; null when another incident was opened meanwhile or the read failed.
async function loadIncident(withDispatches = true) {
  const id = state.incidentId;
  if (!id) return null;
  try {
    const parts = ["fields", "calls", "locations", "history"];
    const stamp = leaving(parts);
    const [inc, dispatches] = await Promise.all([
      api("GET", `/v1/incidents/${id}`),
      withDispatches ? api("GET", `/v1/incidents/${id}/dispatches`) : null,
    ]);
    const need = land(id, stamp, inc, parts);
    if (!need) return null;
    if (dispatches) state.dispatches = dispatches;
    renderIncident();
    if (state.popping !== id) want(need);
    return need;
  } catch (e) {
    fail(e);
    return null;
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
    if (e.kind === "note") detail = (e.data && e.data.text) || "";
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
  // The map is drawn again only when the locations changed, not for every line of the timeline.
  if (map && shownLocations !== locs) map.show(locs);
  shownLocations = locs;
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
    await readLocations(); // audited, as every read of them; the kecamatan comes as an event
  } catch (e) {
    fail(e);
  }
}

// ---------- fields ----------

// PATCH /v1/incidents/{id}: its answer is the incident's fields as the change left them (the
// statuses allowed next, the kecamatan re-derived from the address), drawn as a read that left
// with the change; the change's timeline line comes as an event.
async function patchIncident(id, body) {
  const stamp = leaving(["fields"]);
  const out = await api("PATCH", `/v1/incidents/${id}`, body);
  if (land(id, stamp, out, ["fields"])) renderIncident();
  return out;
}

async function patch(body) {
  if (!state.incidentId) return;
  try {
    await patchIncident(state.incidentId, body);
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
        const id = state.incidentId;
        const line = await api("POST", `/v1/incidents/${id}/notes`, { text });
        ev.target.value = "";
        ev.target.blur();
        // The note's own line (its event, when it comes, is merged with it by id).
        if (land(id, live.seq, { timeline: [line] }, [])) renderIncident();
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
    await reloadDispatches(); // the resend's line on the timeline comes as an event
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
    // The dispatches, and the status a dispatch moves the incident to (with the statuses
    // allowed next, which closing needs).
    await Promise.all([reloadDispatches(), readBrief()]);
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
    toast(t("call.hung_up")); // the call's end comes as an event
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
      await patchIncident(inc.id, { status: "resolved" });
      status = "resolved";
    }
    if (status !== "closed") await patchIncident(inc.id, { status: "closed" });
    toast(t("incident.closed_toast", { id: inc.id }));
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
  if (e.incident_id && e.incident_id === state.incidentId) ownEvent(e);
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
      "location_added", "location_confirmed", "updated", "status_changed", "note", "kecamatan_changed",
      "call_hangup", "call_transferred", "duplicate_linked", "duplicate_received", "duplicate_relinked",
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
