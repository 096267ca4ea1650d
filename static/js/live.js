// Shared by the live pages: a websocket that reconnects with backoff, state badges and durations.

/** A websocket to `path` (a function, so each reconnect can resume from where the page is). */
export class LiveSocket {
  constructor(path, { onFrame, onOpen, onStatus }) {
    this.path = path;
    this.onFrame = onFrame;
    this.onOpen = onOpen || (() => {});
    this.onStatus = onStatus || (() => {});
    this.failures = 0;
    this.opened = 0;
    this.stopped = false;
    this.timer = null;
    this.connect();
  }

  connect() {
    this.timer = null;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}${this.path()}`);
    this.ws = ws;
    this.onStatus(this.opened ? "reconnecting" : "connecting");
    ws.onopen = () => {
      this.failures = 0;
      this.onStatus("live");
      this.onOpen(this.opened++ > 0);
    };
    ws.onmessage = (event) => this.onFrame(JSON.parse(event.data));
    ws.onclose = (event) => {
      if (this.ws !== ws || this.stopped) return;
      if (event.code === 4404 || event.code === 4403) {
        this.onStatus("gone");
        return;
      }
      // Exponential backoff with jitter, so a restarted server is not stampeded by every viewer.
      const delay = Math.min(30000, 500 * 2 ** this.failures++) * (0.5 + Math.random() / 2);
      this.onStatus("offline");
      this.timer = setTimeout(() => this.connect(), delay);
    };
  }

  /** Drop the connection as a network failure would; the backoff reconnects. */
  drop() {
    this.ws.close();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.ws.close();
  }
}

/** "5 s", "3 min 4 s", "1 h 2 min", like the duration filter in jobs/templatetags/jobs_extras.py. */
export function formatDuration(ms) {
  const total = Math.max(0, Math.floor(ms / 1000));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  if (h) return `${h} h ${m} min`;
  if (m) return `${m} min ${s} s`;
  return `${s} s`;
}

export function updateDuration(el, startedAt, finishedAt) {
  if (!el) return;
  el.dataset.started = startedAt || "";
  el.dataset.finished = finishedAt || "";
  renderDuration(el);
}

function renderDuration(el) {
  const { started, finished } = el.dataset;
  if (!started) return;
  el.textContent = formatDuration((finished ? Date.parse(finished) : Date.now()) - Date.parse(started));
}

/** Running durations count up once a second. */
export function tickDurations() {
  setInterval(() => {
    for (const el of document.querySelectorAll(".duration[data-started]")) {
      if (el.dataset.started && !el.dataset.finished) renderDuration(el);
    }
  }, 1000);
}

export function setState(el, state) {
  if (!el || !state) return;
  setStateClass(el, state);
  el.textContent = state;
}

/** Colour an element (a job chip, say) by state without touching its text. */
export function setStateClass(el, state) {
  if (!el || !state) return;
  for (const cls of [...el.classList]) if (cls.startsWith("state-")) el.classList.remove(cls);
  el.classList.add(`state-${state}`);
}

/** Show the connection's health in the page's "live" marker. */
export function showLive(status) {
  for (const el of document.querySelectorAll("[data-role=live]")) {
    el.dataset.status = status;
    el.textContent = status === "live" ? "live" : status;
  }
}

/** Apply a frame only if it is newer than what the element shows; returns whether it was. */
export function isFresh(el, seq) {
  if (!el) return false;
  if (Number(el.dataset.seq || -1) >= seq) return false;
  el.dataset.seq = String(seq);
  return true;
}

/** "just now", "5 min ago", "3 h ago", "2 days ago", like the `ago` filter in jobs_extras.py. */
export function relativeTime(date, now = Date.now()) {
  const seconds = Math.max(0, Math.floor((now - date) / 1000));
  if (seconds < 45) return "just now";
  if (seconds < 3600) return `${Math.max(1, Math.round(seconds / 60))} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  const days = Math.round(seconds / 86400);
  return `${days} day${days === 1 ? "" : "s"} ago`;
}

const absolute = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "long" });

/** Relative times stay current; hovering one shows the absolute time in the reader's own time zone. */
export function renderRelativeTimes(root = document) {
  for (const el of root.querySelectorAll("time[data-relative]")) {
    const date = new Date(el.dateTime);
    if (Number.isNaN(date.getTime())) continue;
    el.textContent = relativeTime(date);
    el.title = absolute.format(date);
  }
}

export function tickRelativeTimes() {
  renderRelativeTimes();
  setInterval(() => renderRelativeTimes(), 30000);
}
