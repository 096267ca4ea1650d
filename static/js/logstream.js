// A job's log parts, in order, exactly once: the websocket is a doorbell and the database the truth.
//
// Parts are numbered. Duplicates are dropped, out-of-order parts wait for the gap to fill, a gap that
// persists is refetched over HTTP (frames can be lost when a channel is full), and a reconnect
// resumes after the last contiguous part. A new attempt (a restart) starts the log over.
import { LiveSocket } from "./live.js";

const GAP_WAIT_MS = 1000;
const PAGE_SIZE = 1000;

export class LogStream {
  constructor({ wsPath, logUrl, attempt, onParts, onReset, onState, onStatus }) {
    this.logUrl = logUrl;
    this.attempt = attempt;
    this.onParts = onParts;
    this.onReset = onReset;
    this.onState = onState;
    this.next = 0; // the part number we need next
    this.pending = new Map();
    this.gapTimer = null;
    this.fetching = false;
    this.knownThrough = -1; // the server has stored every part up to here
    this.completeSeen = false; // the server says the log is complete ...
    this.finalSeen = false; // ... and we have seen its end
    this.socket = new LiveSocket(() => `${wsPath}?after=${this.next - 1}`, {
      onFrame: (frame) => this.frame(frame),
      onStatus,
    });
  }

  frame(frame) {
    if (frame.type === "job.state") {
      if (frame.attempt > this.attempt) this.newAttempt(frame.attempt);
      this.onState(frame);
      if (frame.log_complete && frame.attempt === this.attempt && !this.finalSeen) {
        this.completeSeen = true;
        this.armGap();
      }
    } else if (frame.type === "log.parts") {
      if (frame.attempt < this.attempt) return;
      if (frame.attempt > this.attempt) this.newAttempt(frame.attempt);
      this.knownThrough = Math.max(this.knownThrough, frame.persisted_through ?? -1);
      this.accept(frame.parts);
    }
  }

  newAttempt(attempt) {
    this.attempt = attempt;
    this.next = 0;
    this.pending.clear();
    this.knownThrough = -1;
    this.completeSeen = this.finalSeen = false;
    this.onReset(attempt);
  }

  accept(parts) {
    for (const part of parts) {
      if (part.number >= this.next && !this.pending.has(part.number)) this.pending.set(part.number, part);
    }
    const ready = [];
    while (this.pending.has(this.next)) {
      const part = this.pending.get(this.next);
      if (part.final) this.finalSeen = true;
      ready.push(part);
      this.pending.delete(this.next++);
    }
    if (ready.length) this.onParts(ready);
    const missing = this.pending.size || this.knownThrough >= this.next || (this.completeSeen && !this.finalSeen);
    if (missing) this.armGap();
    else this.clearGap();
  }

  clearGap() {
    clearTimeout(this.gapTimer);
    this.gapTimer = null;
  }

  armGap() {
    if (!this.gapTimer) this.gapTimer = setTimeout(() => this.refetch(), GAP_WAIT_MS);
  }

  /** Read the missing range from the database, page by page. */
  async refetch() {
    this.gapTimer = null;
    if (this.fetching) return;
    this.fetching = true;
    try {
      for (;;) {
        const attempt = this.attempt;
        const response = await fetch(`${this.logUrl}?after=${this.next - 1}&limit=${PAGE_SIZE}`, {
          headers: { Accept: "application/json" },
          credentials: "same-origin",
        });
        if (response.status === 410) return; // archived log expired or unreadable: the page says so
        if (!response.ok) throw new Error(`log fetch answered ${response.status}`);
        const page = await response.json();
        if (page.attempt > attempt) this.newAttempt(page.attempt);
        else if (page.attempt < attempt) return;
        this.knownThrough = Math.max(this.knownThrough, page.persisted_through);
        if (page.complete) this.finalSeen = true; // everything up to the end is in this page
        this.accept(page.parts);
        if (!page.more || !page.parts.length) break;
      }
    } catch (error) {
      console.warn("buildboard: refetching the log failed; retrying", error);
      this.gapTimer = setTimeout(() => this.refetch(), GAP_WAIT_MS * 3);
    } finally {
      this.fetching = false;
    }
  }
}
