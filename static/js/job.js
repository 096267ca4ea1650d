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

if (section.dataset.finished === "true") model.finish();
else view.setFollow(!location.hash);
truncatedNote.hidden = section.dataset.truncated !== "true";

function onParts(parts) {
  for (const part of parts) model.append(part.content);
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

const stream = new LogStream({
  wsPath: section.dataset.wsPath,
  logUrl: section.dataset.logUrl,
  attempt: Number(section.dataset.attempt),
  onParts,
  onReset,
  onState,
  onStatus,
});

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
