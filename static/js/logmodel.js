// The log as rows: text is split into lines, `\r` overwrites are resolved, travis_fold and
// travis_time markers become folds and durations. No DOM here; logview.js draws what it needs.
import { nextPrefix, sgrOnly, stripAnsi } from "./ansi.js";

const MARKER = /travis_(fold|time):(start|end):([^\s\r:\x1b]+)(?::([^\r\n\x1b]*))?/g;
const ERASE = /\x1b\[[0-2]?[JK]/;
const DURATION = /duration=(\d+)/;
// Travis's own words for a failed command; the fold holding such a line stays open.
const FAILED_COMMAND = /The command ".*" (?:exited with (?!0\b)\d+|failed)|Your build exited with (?!0\b)-?\d+/;

/** The line as a terminal would leave it after its carriage returns: the text after the last `\r`
 * (or the last visible piece, when the terminal would still show it), with earlier colours kept. */
function overwrite(line) {
  const pieces = line.split("\r");
  let keep = pieces.length - 1;
  if (stripAnsi(pieces[keep]) === "" && !ERASE.test(pieces[keep])) {
    while (keep > 0 && stripAnsi(pieces[keep]) === "") keep--;
  }
  let codes = "";
  for (let i = 0; i < keep; i++) codes += sgrOnly(pieces[i]);
  return codes + pieces[keep] + (keep < pieces.length - 1 ? pieces.slice(keep + 1).map(sgrOnly).join("") : "");
}

export class LogModel {
  constructor() {
    this.reset();
  }

  reset() {
    this.text = []; // each row's line, SGR codes kept, markers and overwritten text gone
    this.sgr = []; // the SGR prefix in force at the start of each row
    this.folds = []; // {name, start, end, collapsed, failed}
    this.heads = new Map(); // row -> [fold ids whose header it is]
    this.durations = new Map(); // row -> nanoseconds
    this.timers = new Map(); // travis_time id -> {row, ns}
    this.stack = []; // open fold ids, innermost last
    this.waiting = { folds: [], timers: [] }; // markers on a line of their own, for the next row
    this.prefix = "";
    this.tail = ""; // an unfinished last line
    this.tailRow = null; // {text, sgr} shown for it
    this.finished = false;
    this.plain = []; // visible text per row, filled in lazily for search
    this.times = []; // when each row's part arrived (ms since the epoch), for the timestamps column
    this.partAt = null;
  }

  /** When the row's line arrived: the part that completed it (or, for the unfinished last line, the latest). */
  rowTime(i) {
    return i < this.times.length ? this.times[i] : this.partAt;
  }

  get length() {
    return this.text.length + (this.tailRow ? 1 : 0);
  }

  rowText(i) {
    return i < this.text.length ? this.text[i] : this.tailRow.text;
  }

  rowSgr(i) {
    return i < this.sgr.length ? this.sgr[i] : this.tailRow.sgr;
  }

  plainText(i) {
    if (i >= this.text.length) return stripAnsi(this.tailRow.text);
    for (let j = this.plain.length; j <= i; j++) this.plain.push(stripAnsi(this.text[j]));
    return this.plain[i];
  }

  /** Append log content (any slicing of the text), which arrived at `at` (ISO 8601, optional). */
  append(content, at) {
    if (at) this.partAt = Date.parse(at);
    const lines = (this.tail + content).split("\n");
    this.tail = lines.pop();
    for (const line of lines) this.addLine(line);
    this.tailRow = null;
    if (this.tail) {
      const text = this.clean(this.tail).line;
      if (stripAnsi(text) !== "") this.tailRow = { text, sgr: this.prefix };
    }
  }

  /** The log is complete: the last line counts even without a newline, and open folds failed. */
  complete() {
    if (this.tail) {
      this.addLine(this.tail);
      this.tail = "";
      this.tailRow = null;
    }
    for (const id of this.stack) this.folds[id].failed = true;
  }

  clean(raw) {
    let line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
    let markers = null;
    if (line.includes("travis_")) {
      MARKER.lastIndex = 0;
      markers = [...line.matchAll(MARKER)];
      if (markers.length) line = line.replace(MARKER, "");
      else markers = null;
    }
    if (line.includes("\r")) line = overwrite(line);
    return { line, markers };
  }

  addLine(raw) {
    const { line, markers } = this.clean(raw);
    const visible = stripAnsi(line);
    if (markers && visible.trim() === "") {
      // A line of markers only: it is not shown; its markers apply to the rows around it.
      for (const m of markers) this.marker(m, null);
      this.prefix = nextPrefix(this.prefix, line);
      return;
    }
    const row = this.text.length;
    this.text.push(line);
    this.sgr.push(this.prefix);
    this.times.push(this.partAt);
    this.prefix = nextPrefix(this.prefix, line);
    for (const id of this.waiting.folds) this.startFold(id, row);
    for (const timer of this.waiting.timers) this.startTimer(timer, row);
    this.waiting = { folds: [], timers: [] };
    if (markers) for (const m of markers) this.marker(m, row);
    if (FAILED_COMMAND.test(visible)) for (const id of this.stack) this.folds[id].failed = true;
  }

  marker(match, row) {
    const [, kind, edge, name, rest] = match;
    if (kind === "fold" && edge === "start") {
      const id = this.folds.push({ name, start: null, end: null, collapsed: false, failed: false }) - 1;
      this.stack.push(id);
      if (row === null) this.waiting.folds.push(id);
      else this.startFold(id, row);
    } else if (kind === "fold") {
      const at = this.stack.map((id) => this.folds[id].name).lastIndexOf(name);
      if (at < 0) return;
      for (const id of this.stack.splice(at)) this.endFold(id, row === null ? this.text.length - 1 : row - 1);
    } else if (edge === "start") {
      const timer = { row: null, ns: null };
      this.timers.set(name, timer);
      if (row === null) this.waiting.timers.push(timer);
      else this.startTimer(timer, row);
    } else {
      const timer = this.timers.get(name);
      const found = rest && DURATION.exec(rest);
      if (!timer || !found) return;
      timer.ns = Number(found[1]);
      if (timer.row !== null) this.durations.set(timer.row, timer.ns);
    }
  }

  startFold(id, row) {
    this.folds[id].start = row;
    if (!this.heads.has(row)) this.heads.set(row, []);
    this.heads.get(row).push(id);
  }

  endFold(id, row) {
    const fold = this.folds[id];
    if (fold.start === null || row < fold.start) {
      // Nothing was printed inside it: forget it.
      this.waiting.folds = this.waiting.folds.filter((w) => w !== id);
      return;
    }
    fold.end = row;
    // Folds close as the job runs; once it has finished, closed ones start collapsed.
    if (this.finished && !fold.failed && row > fold.start) fold.collapsed = true;
  }

  startTimer(timer, row) {
    timer.row = row;
    if (timer.ns !== null) this.durations.set(row, timer.ns);
  }

  /** The job finished: collapse every closed fold except where it failed. */
  finish() {
    this.finished = true;
    for (const fold of this.folds) {
      if (fold.start !== null && fold.end !== null && fold.end > fold.start) fold.collapsed = !fold.failed;
    }
  }

  /** Row indexes currently shown, given the collapsed folds. */
  visibleRows() {
    const out = [];
    const n = this.length;
    for (let r = 0; r < n; ) {
      out.push(r);
      let next = r + 1;
      const heads = this.heads.get(r);
      if (heads) {
        for (const id of heads) {
          const fold = this.folds[id];
          if (fold.collapsed) next = Math.max(next, (fold.end === null ? n - 1 : fold.end) + 1);
        }
      }
      r = next;
    }
    return out;
  }

  /** Expand every fold hiding `row`; returns whether anything changed. */
  reveal(row) {
    let changed = false;
    for (const fold of this.folds) {
      if (fold.collapsed && fold.start !== null && row > fold.start && (fold.end === null || row <= fold.end)) {
        fold.collapsed = false;
        changed = true;
      }
    }
    return changed;
  }

  /** Where a reader looks first when a job failed: the first line matching `pattern` inside the failing
   * fold (the one left open), else that fold's first line, else the first matching line anywhere.
   * Returns a row index, or -1. */
  firstError(pattern) {
    const failed = this.folds.filter((f) => f.failed && f.start !== null).sort((a, b) => a.start - b.start);
    const test = (row) => pattern && pattern.test(this.plainText(row));
    if (failed.length) {
      const fold = failed[failed.length - 1]; // the innermost, where it actually stopped
      const end = fold.end === null ? this.length - 1 : fold.end;
      for (let row = fold.start; row <= end; row++) if (test(row)) return row;
      return fold.start;
    }
    for (let row = 0; row < this.length; row++) if (test(row)) return row;
    return -1;
  }

  foldsAt(row) {
    return (this.heads.get(row) || []).map((id) => ({ id, ...this.folds[id] }));
  }
}

/** "850 ms", "12.3 s", "4 min 5 s" from nanoseconds. */
export function formatNanoseconds(ns) {
  const ms = ns / 1e6;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}
