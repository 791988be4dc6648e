// The agency page, for agencies without a system of their own: only the dispatches sent to
// this agency (the API scopes an agency user to them), with acknowledge, en route, on scene,
// completed and declined. Every button is reachable with Tab and Enter.

import { page, t, api, el, clear, clock, duration, toast, fail, setStreamState } from "./common.js";

const $ = (id) => document.getElementById(id);
const FINISHED = new Set(["completed", "declined"]);
let items = [];

async function load() {
  try {
    const out = await api("GET", "/v1/dispatches?limit=100");
    items = out.items;
    render();
  } catch (e) {
    fail(e);
  }
}

async function move(d, status, reasonInput) {
  const body = { status };
  if (status === "declined") {
    const reason = reasonInput.value.trim();
    if (!reason) {
      reasonInput.focus();
      toast(t("agency.decline_reason"), "error");
      return;
    }
    body.reason = reason;
  }
  try {
    await api("PATCH", `/v1/dispatches/${d.id}`, body);
    toast(t(`dstatus.${status}`));
    await load();
  } catch (e) {
    fail(e);
  }
}

function render() {
  const showDone = $("show-done").checked;
  const box = clear($("dispatches"));
  const shown = items.filter((d) => showDone || !FINISHED.has(d.status));
  $("agency-empty").hidden = shown.length > 0;
  for (const d of shown) {
    const inc = d.incident || {};
    const waited = (Date.now() - new Date(d.created_at).getTime()) / 1000;
    const armed = (Date.now() - new Date(d.last_resent_at || d.created_at).getTime()) / 1000;
    const overdue = d.status === "sent" && armed > page.ack_timeout_s;
    // The centre sent it again because nobody acknowledged it: shown until it is.
    const resent = d.status === "sent" && d.resend_count > 0;
    const reason = el("input", { class: "reason", maxlength: 200, placeholder: t("agency.decline_reason"), "aria-label": t("agency.decline_reason") });
    const buttons = el("div", { class: "buttons" });
    for (const s of d.allowed_statuses) {
      buttons.append(el("button", { type: "button", dataset: { action: s }, onclick: () => move(d, s, reason) }, t(`action.${s}`)));
    }
    if (d.allowed_statuses.includes("declined")) buttons.append(reason);
    const cls = ["dispatch-card", overdue ? "overdue" : "", resent ? "resent" : ""].filter(Boolean).join(" ");
    box.append(el("article", { class: cls, dataset: { id: d.id, incident: d.incident_id, status: d.status, resent: d.resend_count || 0 } },
      el("h2", {}, t("incident.title", { id: d.incident_id }), " ",
        el("span", { class: `badge dstatus-${d.status}` }, t(`dstatus.${d.status}`)), " ",
        inc.category ? el("span", { class: "badge" }, t(`category.${inc.category}`)) : null, " ",
        inc.priority ? el("span", { class: "prio" }, `P${inc.priority}`) : null),
      el("p", { class: "muted small" }, t("agency.received", { at: clock(d.created_at) }),
        d.status === "sent" ? " · " : "",
        d.status === "sent" ? el("span", { class: "timer", dataset: { since: d.created_at } }, duration(waited)) : null,
        overdue ? " · " : "",
        overdue ? el("span", { class: "badge alert" }, t("dispatch.overdue")) : null),
      resent ? el("p", { class: "resent-note", role: "alert" }, t("agency.resent", { n: d.resend_count, at: clock(d.last_resent_at) })) : null,
      inc.address ? el("p", { class: "address" }, inc.address) : null,
      inc.landmark ? el("p", { class: "landmark" }, t("agency.landmark", { landmark: inc.landmark })) : null,
      inc.summary ? el("p", {}, inc.summary) : null,
      d.note ? el("p", { class: "small" }, d.note) : null,
      buttons));
  }
}

function tick() {
  for (const node of document.querySelectorAll(".timer[data-since]")) {
    node.textContent = duration((Date.now() - new Date(node.dataset.since).getTime()) / 1000);
  }
}

async function main() {
  $("show-done").addEventListener("change", render);
  // Agency users may not read the centre's event stream (it carries every incident): the
  // page asks for its own dispatches every few seconds instead. Redrawn only when they
  // changed, so that focus and a half-typed reason survive.
  let last = "";
  const poll = async () => {
    try {
      const out = await api("GET", "/v1/dispatches?limit=100");
      const sig = JSON.stringify(out.items.map((d) => [d.id, d.status, d.resend_count]));
      items = out.items;
      if (sig !== last) { last = sig; render(); }
      setStreamState("live");
    } catch (e) {
      setStreamState("reconnecting");
    }
  };
  await poll();
  setInterval(poll, 3000);
  setInterval(tick, 1000);
  document.body.dataset.ready = "1";
}

main().catch(fail);
