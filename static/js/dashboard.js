// Home, repository and build pages: states, durations and new builds arrive over a websocket.
// Frames carry the build's or job's seq, so an older frame never overwrites a newer state. After a
// reconnect the live parts of the page are re-read from the server, since frames may have been missed.
import {
  LiveSocket, isFresh, renderRelativeTimes, setState, showLive, tickDurations, tickRelativeTimes, updateDuration,
} from "./live.js";

const MAX_ROWS = 50;
// Looked up each time: a resync replaces these elements.
const buildPage = document.querySelector("[data-live=build]");
const liveTable = () => document.querySelector("[data-live=builds]");
const liveBranches = () => document.querySelector("[data-live=branches]");
const fetching = new Set();

const role = (el, name) => el.querySelector(`[data-role="${name}"]`);

function onBuild(frame) {
  for (const el of document.querySelectorAll(`[data-build-id="${frame.build_id}"]`)) {
    if (!isFresh(el, frame.seq)) continue;
    setState(role(el, "state"), frame.state);
    updateDuration(role(el, "duration") || document.querySelector("dl [data-role=duration]"), frame.started_at,
      frame.finished_at);
  }
  const table = liveTable();
  // Only the first page grows: later pages are a fixed slice of the past.
  if (table && table.dataset.page === "1" && !table.querySelector(`tr[data-build-id="${frame.build_id}"]`)) {
    addRow(table, frame);
  }
  const branches = liveBranches();
  if (branches) updateBranch(branches, frame);
}

function onJob(frame) {
  const row = document.querySelector(`tr[data-job-id="${frame.job_id}"]`);
  if (!isFresh(row, frame.seq)) return;
  setState(role(row, "state"), frame.display_state);
  role(row, "exit-code").textContent = frame.exit_code ?? "";
  role(row, "inconsistent").hidden = !frame.inconsistent;
  if (frame.worker) role(row, "worker").textContent = frame.worker;
  updateDuration(role(row, "duration"), frame.started_at, frame.finished_at);
  const attempt = role(row, "attempt");
  if (attempt) {
    attempt.hidden = frame.attempt < 2;
    attempt.textContent = `attempt ${frame.attempt}`;
  }
  // A job that has just failed (or been restarted) changes the failure excerpts and the build's buttons.
  const before = row.dataset.state;
  row.dataset.state = frame.state;
  const failing = (state) => state === "failed" || state === "errored";
  if (before !== frame.state && (failing(frame.state) || failing(before))) scheduleResync();
}

let resyncTimer = null;
function scheduleResync() {
  clearTimeout(resyncTimer);
  resyncTimer = setTimeout(resync, 300); // one refetch for a burst of frames
}

/** A build this page has not shown yet: ask the server for its row, which also applies the filters. */
async function addRow(table, frame) {
  const wanted = table.dataset.filterRepository;
  if (wanted && frame.repository && wanted !== frame.repository) return;
  if (fetching.has(frame.build_id)) return;
  fetching.add(frame.build_id);
  try {
    const params = new URLSearchParams();
    for (const name of ["repository", "branch", "state", "event"]) {
      const value = table.dataset[`filter${name[0].toUpperCase()}${name.slice(1)}`];
      if (value) params.set(name, value);
    }
    const response = await fetch(`/builds/${frame.build_id}/row?${params}`, { credentials: "same-origin" });
    table = liveTable();
    if (response.status !== 200 || !table || table.querySelector(`tr[data-build-id="${frame.build_id}"]`)) return;
    const template = document.createElement("template");
    template.innerHTML = (await response.text()).trim(); // our own server's escaped template output
    const row = template.content.firstElementChild;
    const body = role(table, "rows");
    const before = [...body.rows].find((r) => Number(r.dataset.buildId) < frame.build_id);
    body.insertBefore(row, before || null);
    while (body.rows.length > MAX_ROWS) body.lastElementChild.remove();
    renderRelativeTimes(row);
    role(table.parentElement, "empty")?.remove();
  } finally {
    fetching.delete(frame.build_id);
  }
}

function updateBranch(branches, frame) {
  if (String(frame.repository_id) !== branches.dataset.repositoryId || !frame.branch) return;
  if ((frame.event === "pull_request") !== (branches.dataset.event === "pull_request")) return;
  let card = [...branches.children].find((c) => c.dataset.branch === frame.branch);
  if (card && Number(card.dataset.buildId) > frame.build_id) return; // an older build of that branch
  if (!card) {
    card = branches.firstElementChild.cloneNode(true);
    card.dataset.branch = frame.branch;
    card.querySelector(".branch-name").textContent = frame.branch;
    card.querySelector(".branch-name").search = new URLSearchParams({
      repository: frame.repository || "", branch: frame.branch,
    }).toString();
    branches.prepend(card);
  }
  if (Number(card.dataset.buildId) !== frame.build_id) {
    card.dataset.buildId = String(frame.build_id);
    card.dataset.seq = "-1";
    const link = role(card, "build-link");
    link.href = `/builds/${frame.build_id}/`;
    link.textContent = `#${frame.number}`;
    const code = card.querySelector("code");
    const forge = code.closest("a.commit-link");
    if (forge) forge.href = forge.href.replace(/[^/]*$/, encodeURIComponent(frame.commit || ""));
    code.textContent = (frame.commit || "").slice(0, 7);
    const time = card.querySelector("time[data-relative]");
    if (time && frame.created_at) {
      time.dateTime = frame.created_at;
      renderRelativeTimes(card);
    }
  }
  if (!isFresh(card, frame.seq)) return;
  setState(role(card, "state"), frame.state);
  updateDuration(role(card, "duration"), frame.started_at, frame.finished_at);
}

/** Replace each live region with the server's current rendering of it. */
async function resync() {
  const response = await fetch(location.href, { credentials: "same-origin" });
  if (!response.ok) return;
  const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
  for (const el of document.querySelectorAll("[data-live]")) {
    const twin = fresh.querySelector(`[data-live="${el.dataset.live}"]`);
    if (twin) el.replaceWith(document.importNode(twin, true));
  }
  renderRelativeTimes();
}

const path = buildPage ? `/ws/builds/${buildPage.dataset.buildId}/` : "/ws/builds/";
new LiveSocket(() => path, {
  onFrame(frame) {
    if (frame.type === "build.state") onBuild(frame);
    else if (frame.type === "job.state") onJob(frame);
  },
  onOpen(reconnected) {
    if (reconnected) resync();
  },
  onStatus: showLive,
});
tickDurations();
tickRelativeTimes();
