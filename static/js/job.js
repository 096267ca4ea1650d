// The job page: live state, the log viewer and its toolbar.
import { isFresh, setState, setStateClass, showLive, tickDurations, updateDuration } from "./live.js";
import { LogModel } from "./logmodel.js";
import { LogStream } from "./logstream.js";
import { LogView } from "./logview.js";

const FINAL = new Set(["passed", "failed", "errored", "canceled"]);
const section = document.querySelector(".logview");
const $ = (role, root = document) => root.querySelector(`[data-role="${role}"]`);
// Roles that show in the page head and again in the compact sticky bar.
const $$ = (role) => document.querySelectorAll(`[data-role="${role}"]`);

const model = new LogModel();
const view = new LogView(section, model);
const truncatedNote = $("truncated", section);
const statusEl = $("log-status", section);
const searchInput = $("search", section);
const countEl = $("search-count", section);
let logComplete = false;

if (section.dataset.finished === "true" || section.dataset.current === "false") model.finish();
else view.setFollow(!location.hash);
truncatedNote.hidden = section.dataset.truncated !== "true";

function onParts(parts) {
  for (const part of parts) model.append(part.content, part.at);
  if (parts.some((p) => p.final)) completeLog();
  view.refresh();
}

function completeLog() {
  logComplete = true;
  model.complete();
  if (model.finished) model.finish();
}

function onReset(attempt) {
  model.reset();
  logComplete = false;
  truncatedNote.hidden = true;
  $("attempt").textContent = attempt;
  const picker = document.querySelector("[data-role=attempt-picker] select");
  if (picker && ![...picker.options].some((o) => Number(o.value) === attempt)) {
    for (const option of picker.options) option.textContent = option.value;
    picker.prepend(new Option(`${attempt} (latest)`, String(attempt), true, true));
  }
  view.setQuery(searchInput.value);
  view.refresh();
  view.setFollow(true);
}

function onState(frame) {
  if (!isFresh(section, frame.seq)) return;
  for (const el of $$("state")) setState(el, frame.display_state);
  setStateClass(document.querySelector(".siblings [aria-current=page]"), frame.display_state);
  $("attempt").textContent = frame.attempt;
  $("exit-code").textContent = frame.exit_code ?? "–";
  $("inconsistent").hidden = !frame.inconsistent;
  const worker = frame.worker ? `${frame.worker} ${frame.worker_version || ""}`.trim() : "–";
  for (const el of $$("worker")) el.textContent = worker;
  for (const el of $$("duration")) updateDuration(el, frame.started_at, frame.finished_at);
  const finished = FINAL.has(frame.state);
  for (const form of $$("cancel-form")) form.hidden = finished || frame.cancel_requested;
  for (const form of $$("restart-form")) form.hidden = !finished;
  truncatedNote.hidden = !frame.log_truncated;
  if (finished && !model.finished) {
    model.finish();
    if (frame.log_complete && !logComplete) completeLog();
    view.setFollow(false);
    view.refresh();
  } else if (!finished && model.finished) {
    model.finished = false;
  }
}

function onStatus(status) {
  showLive(status);
  section.dataset.status = status;
  statusEl.textContent = status === "live" ? "" : status;
}

/** An earlier attempt is over and kept as it was: read it once over HTTP, no live updates. */
async function loadEarlierAttempt(attempt) {
  statusEl.textContent = "loading…";
  let after = -1;
  for (;;) {
    const response = await fetch(`${section.dataset.logUrl}?attempt=${attempt}&after=${after}&limit=5000`, {
      headers: { Accept: "application/json" },
      credentials: "same-origin",
    });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      statusEl.textContent = body.error || `could not load the log (${response.status})`;
      return;
    }
    const page = await response.json();
    for (const part of page.parts) model.append(part.content, part.at);
    if (page.parts.length) after = page.parts[page.parts.length - 1].number;
    if (!page.more || !page.parts.length) break;
  }
  model.complete();
  model.finish();
  view.refresh();
  statusEl.textContent = `attempt ${attempt}`;
  section.dataset.status = "loaded";
}

const current = section.dataset.current !== "false";
const stream = current
  ? new LogStream({
      wsPath: section.dataset.wsPath,
      logUrl: section.dataset.logUrl,
      attempt: Number(section.dataset.attempt),
      onParts,
      onReset,
      onState,
      onStatus,
    })
  : null;
if (!current) {
  model.finished = true;
  loadEarlierAttempt(Number(section.dataset.attempt));
}

// The attempt picker: choosing an attempt shows it (the Show button is there without JavaScript).
const picker = document.querySelector("[data-role=attempt-picker]");
if (picker) {
  $("attempt-go", picker).hidden = true;
  picker.querySelector("select").addEventListener("change", () => picker.requestSubmit());
}

// Jump to first error: the failing fold, or the first line matching the repository's error pattern.
let errorPattern = null;
try {
  errorPattern = new RegExp(section.dataset.errorPattern, "im");
} catch {
  errorPattern = /\b(?:error|failed|fatal)\b/i; // a pattern only Python understands
}
$("jump-error", section).addEventListener("click", () => {
  const row = model.firstError(errorPattern);
  if (row < 0) {
    statusEl.textContent = "no error found";
    return;
  }
  view.goToRow(row);
});

// Timestamps: when each line arrived, from the time its part was stored.
const timesButton = $("timestamps", section);
timesButton.addEventListener("click", () => {
  const on = timesButton.getAttribute("aria-pressed") !== "true";
  timesButton.setAttribute("aria-pressed", String(on));
  view.setShowTimes(on);
});

// A compact header (state, duration, worker, buttons) stays in view once the page head has scrolled away.
const jobbar = $("jobbar");
new IntersectionObserver(([entry]) => {
  const away = !entry.isIntersecting && entry.boundingClientRect.top < 0;
  jobbar.hidden = !away;
  document.body.classList.toggle("jobbar-on", away);
}, { rootMargin: "-48px 0px 0px 0px" }).observe($("page-head"));

// Search box: Enter for the next match, Shift+Enter for the previous; "/" focuses it.
function showCount(current, total) {
  if (!searchInput.value) countEl.textContent = "";
  else countEl.textContent = total ? `${current || "–"} of ${total}` : "no matches";
}
let searchTimer = null;
searchInput.addEventListener("input", () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => showCount(0, view.setQuery(searchInput.value)), 120);
});
searchInput.addEventListener("keydown", (event) => {
  if (event.key !== "Enter") return;
  event.preventDefault();
  clearTimeout(searchTimer);
  if (view.search.query !== searchInput.value.toLowerCase()) view.setQuery(searchInput.value);
  showCount(...view.step(event.shiftKey ? -1 : 1));
});
$("search-next", section).addEventListener("click", () => showCount(...view.step(1)));
$("search-prev", section).addEventListener("click", () => showCount(...view.step(-1)));
$("expand-all", section).addEventListener("click", () => view.setAllFolds(false));
$("collapse-all", section).addEventListener("click", () => view.setAllFolds(true));
document.addEventListener("keydown", (event) => {
  if (event.key === "/" && !event.target.closest("input, textarea, select")) {
    event.preventDefault();
    searchInput.focus();
  }
});

// The log toolbar sticks right under the site header, whatever height the header wraps to.
const topbar = document.querySelector(".topbar");
new ResizeObserver(() => {
  document.documentElement.style.setProperty("--topbar-h", `${topbar.getBoundingClientRect().height}px`);
}).observe(topbar);

tickDurations();
// For people debugging in the console, and for the browser tests' reconnect check.
window.buildboardLog = { model, view, stream };
