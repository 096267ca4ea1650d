// The fleet page stays live: a staff-only websocket rings when something changed and the page refetches
// its server-rendered fragment. Frames may be dropped (channels_redis drops on full channels), so the
// fragment is also refetched after every reconnect and every 15 s — silence and "stuck starting" are
// conditions that arise from time passing, with no event at all.

import { LiveSocket } from "./live.js";

const root = document.getElementById("fleet-live");
const dot = document.getElementById("fleet-live-dot");
const PERIODIC_MS = 15000;
const DEBOUNCE_MS = 400;

let timer = null;
let inflight = false;
let pending = false;

function editing() {
  const el = document.activeElement;
  return el && root.contains(el) && ["INPUT", "SELECT", "TEXTAREA"].includes(el.tagName);
}

function schedule(delay = DEBOUNCE_MS) {
  if (timer) return;
  timer = setTimeout(() => { timer = null; refresh(); }, delay);
}

async function refresh() {
  // Never swap the DOM under someone typing a version or capacity; catch up when they leave the field.
  if (inflight || editing()) { pending = true; return; }
  inflight = true;
  try {
    const response = await fetch(root.dataset.fragmentUrl, { credentials: "same-origin" });
    if (response.redirected || response.status === 403) {
      window.location.reload();  // logged out or no longer staff: let the server decide what to show
      return;
    }
    if (!response.ok) return;
    const html = await response.text();
    if (editing()) { pending = true; return; }
    const open = [...root.querySelectorAll("details[open][data-key]")].map((d) => d.dataset.key);
    root.innerHTML = html;  // rendered by Django templates, so already escaped
    for (const key of open) {
      const el = root.querySelector(`details[data-key="${CSS.escape(key)}"]`);
      if (el) el.open = true;
    }
    root.dataset.refreshedAt = String(Date.now());
  } catch (err) {
    // Network hiccup: the next doorbell or periodic refresh tries again.
  } finally {
    inflight = false;
    if (pending && !editing()) { pending = false; schedule(); }
  }
}

root.addEventListener("focusout", () => {
  if (pending) { pending = false; schedule(); }
});

if (root) {
  // Reconnect and backoff live in LiveSocket, shared by every live page.
  new LiveSocket(() => root.dataset.wsPath, {
    onFrame: () => schedule(),
    onOpen: () => schedule(),  // anything may have changed while we were disconnected
    onStatus: (status) => dot.classList.toggle("on", status === "live"),
  });
  setInterval(() => schedule(0), PERIODIC_MS);
}
