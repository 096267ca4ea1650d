// The log on screen: only the rows in view (plus a margin) are in the DOM, so a 100,000-line log opens
// and scrolls like a short one. Rows have one fixed height; the page itself scrolls.
// Also here: line links (#L12, shift-click for #L12-L20), folds, search and follow mode.
import { escapeHtml, lineToHtml } from "./ansi.js";
import { formatNanoseconds } from "./logmodel.js";

const MARGIN_ROWS = 60;
const LINE_HASH = /^#L(\d+)(?:-L(\d+))?$/;

export class LogView {
  constructor(section, model) {
    this.section = section;
    this.model = model;
    this.box = section.querySelector("[data-role=log]");
    this.rowsEl = section.querySelector("[data-role=rows]");
    this.emptyEl = section.querySelector("[data-role=empty]");
    this.followBtn = document.querySelector("[data-role=follow]");
    this.visible = [];
    this.rowHeight = this.measureRowHeight();
    this.window = null; // [first, last) visible indexes drawn, and the model version drawn
    this.version = 0;
    this.highlight = null; // [from, to] line numbers
    this.anchor = null; // the line a shift-click extends from
    this.pendingJump = null; // a #L line not loaded yet
    this.keepHighlightOpen = false; // until the reader folds something themselves
    this.search = { query: "", matches: [], current: -1, rowsWithMatch: new Set(), scanned: 0 };
    this.follow = false;
    this.showTimes = false;
    this.lastScrollY = window.scrollY;
    this.frame = 0;

    window.addEventListener("scroll", () => this.onScroll(), { passive: true });
    window.addEventListener("resize", () => this.schedule());
    window.addEventListener("hashchange", () => this.jumpToHash(true));
    this.box.addEventListener("click", (event) => this.onClick(event));
    this.followBtn.addEventListener("click", () => this.setFollow(true));
    this.jumpToHash(false);
  }

  measureRowHeight() {
    const probe = document.createElement("div");
    probe.className = "ln";
    probe.textContent = "M";
    this.rowsEl.append(probe);
    const height = probe.getBoundingClientRect().height || 20;
    probe.remove();
    return height;
  }

  /** The model changed: recompute which rows show and draw. */
  refresh() {
    // While the log streams in, folds that close as finished must not hide the lines the address names.
    if (this.highlight && this.keepHighlightOpen) this.model.reveal(this.highlight[0] - 1);
    this.visible = this.model.visibleRows();
    this.version++;
    this.box.style.height = `${this.visible.length * this.rowHeight}px`;
    this.emptyEl.hidden = this.model.length > 0;
    if (this.search.query) this.extendSearch();
    if (this.pendingJump && this.model.length >= this.pendingJump[0]) this.jumpToHash(false);
    this.schedule();
    if (this.follow) this.scrollToEnd();
  }

  schedule() {
    if (!this.frame) this.frame = requestAnimationFrame(() => this.draw());
  }

  /** Draw the rows in view, if the window or the content changed. */
  draw() {
    this.frame = 0;
    const top = this.box.getBoundingClientRect().top;
    const first = Math.max(0, Math.floor(-top / this.rowHeight) - MARGIN_ROWS);
    const last = Math.min(this.visible.length, Math.ceil((window.innerHeight - top) / this.rowHeight) + MARGIN_ROWS);
    const key = `${first}:${last}:${this.version}`;
    if (this.window === key) return;
    this.window = key;
    const html = [];
    for (let v = first; v < last; v++) html.push(this.rowHtml(this.visible[v]));
    this.rowsEl.style.transform = `translateY(${first * this.rowHeight}px)`;
    this.rowsEl.innerHTML = html.join("");
    if (this.search.query) this.markMatches();
  }

  rowHtml(row) {
    const n = row + 1;
    const classes = ["ln"];
    if (this.highlight && n >= this.highlight[0] && n <= this.highlight[1]) classes.push("hl");
    if (this.search.rowsWithMatch.has(row)) classes.push("match");
    const current = this.search.matches[this.search.current];
    if (current && current.row === row) classes.push("current");
    let fold = "";
    for (const f of this.model.foldsAt(row)) {
      classes.push("fold-head");
      if (f.failed) classes.push("fold-failed");
      const open = !f.collapsed;
      fold = `<button type="button" class="fold" data-fold="${f.id}" aria-expanded="${open}" title="${open ? "Collapse" : "Expand"} ${escapeHtml(f.name)}">${escapeHtml(f.name)}</button>`;
    }
    const ns = this.model.durations.get(row);
    const duration = ns === undefined ? "" : `<span class="dur">${formatNanoseconds(ns)}</span>`;
    const text = lineToHtml(this.model.rowSgr(row), this.model.rowText(row));
    const time = this.showTimes ? `<span class="ts">${formatTime(this.model.rowTime(row))}</span>` : "";
    return `<div class="${classes.join(" ")}" data-row="${row}"><a class="n" href="#L${n}" tabindex="-1">${n}</a>${time}${fold}<span class="t">${text}</span>${duration}</div>`;
  }

  /** Show or hide when each line arrived. */
  setShowTimes(on) {
    this.showTimes = on;
    this.version++;
    this.schedule();
  }

  /** Highlight line `row` (0-based), open what hides it, put it in the address and in view. */
  goToRow(row) {
    const n = row + 1;
    this.setFollow(false);
    this.keepHighlightOpen = true;
    if (this.model.reveal(row)) this.refresh();
    this.anchor = n;
    this.setHighlight(n, n);
    history.replaceState(null, "", `#L${n}`);
    this.scrollToRow(row);
  }

  onClick(event) {
    const foldButton = event.target.closest("button.fold");
    if (foldButton) {
      const fold = this.model.folds[Number(foldButton.dataset.fold)];
      fold.collapsed = !fold.collapsed;
      this.keepHighlightOpen = false;
      this.refresh();
      const again = this.rowsEl.querySelector(`button.fold[data-fold="${foldButton.dataset.fold}"]`);
      if (again) again.focus();
      return;
    }
    const link = event.target.closest("a.n");
    if (!link) return;
    event.preventDefault();
    const n = Number(link.getAttribute("href").slice(2));
    if (event.shiftKey && this.anchor !== null) {
      const [a, b] = [Math.min(this.anchor, n), Math.max(this.anchor, n)];
      this.setHighlight(a, b);
      history.replaceState(null, "", `#L${a}-L${b}`);
    } else {
      this.anchor = n;
      this.setHighlight(n, n);
      history.replaceState(null, "", `#L${n}`);
    }
    window.getSelection()?.removeAllRanges(); // a shift-click would select text otherwise
  }

  setHighlight(from, to) {
    this.highlight = [from, to];
    this.version++;
    this.schedule();
  }

  /** Highlight and scroll to the lines in the address, now or once they have arrived. */
  jumpToHash(fromEvent) {
    const match = LINE_HASH.exec(location.hash);
    if (!match) return;
    const from = Number(match[1]);
    const to = Math.max(from, Number(match[2] || match[1]));
    this.anchor = from;
    this.highlight = [from, to];
    this.keepHighlightOpen = true;
    if (this.model.length < from) {
      this.pendingJump = [from, to];
      return;
    }
    this.pendingJump = null;
    this.setFollow(false);
    if (this.model.reveal(from - 1)) this.refresh();
    this.version++;
    this.scrollToRow(from - 1, fromEvent ? "auto" : "instant");
  }

  scrollToRow(row, behavior = "instant") {
    const index = lowerBound(this.visible, row);
    const boxTop = this.box.getBoundingClientRect().top + window.scrollY;
    const y = boxTop + index * this.rowHeight - window.innerHeight / 3;
    window.scrollTo({ top: Math.max(0, y), behavior });
    this.schedule();
  }

  scrollToEnd() {
    window.scrollTo({ top: document.documentElement.scrollHeight, behavior: "instant" });
    this.schedule();
  }

  /** Follow mode: keep the newest line in view; scrolling up pauses it, the button resumes it. */
  setFollow(on) {
    this.follow = on;
    this.followBtn.hidden = on || this.model.finished;
    if (on) this.scrollToEnd();
  }

  onScroll() {
    // Our own scrolling only ever moves down, so moving up is the reader taking over.
    const y = window.scrollY;
    if (y < this.lastScrollY - 4 && this.follow) {
      this.setFollow(false);
    } else if (!this.follow && !this.model.finished && this.atBottom()) {
      this.setFollow(true);
    }
    this.lastScrollY = y;
    this.schedule();
  }

  atBottom() {
    return window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 8;
  }

  setAllFolds(collapsed) {
    this.keepHighlightOpen = false;
    for (const fold of this.model.folds) if (fold.start !== null) fold.collapsed = collapsed;
    this.refresh();
  }

  // Search: case-insensitive, over the visible text of every row, counted per occurrence.

  setQuery(query) {
    this.search = { query: query.toLowerCase(), matches: [], current: -1, rowsWithMatch: new Set(), scanned: 0 };
    if (this.search.query) this.extendSearch();
    this.version++;
    this.schedule();
    return this.search.matches.length;
  }

  extendSearch() {
    const s = this.search;
    const n = this.model.text.length;
    for (let row = s.scanned; row < n; row++) {
      const text = this.model.plainText(row).toLowerCase();
      for (let at = text.indexOf(s.query); at >= 0; at = text.indexOf(s.query, at + s.query.length)) {
        s.matches.push({ row, at });
        s.rowsWithMatch.add(row);
      }
    }
    s.scanned = n;
  }

  /** Go to the next (+1) or previous (-1) match; returns [current, total], current counting from 1. */
  step(direction) {
    const s = this.search;
    if (!s.matches.length) return [0, 0];
    s.current = (s.current + direction + s.matches.length) % s.matches.length;
    const row = s.matches[s.current].row;
    this.setFollow(false);
    if (this.model.reveal(row)) this.refresh();
    this.version++;
    this.scrollToRow(row);
    return [s.current + 1, s.matches.length];
  }

  /** Wrap occurrences in the drawn rows in <mark>, by splitting text nodes (never reparsing HTML). */
  markMatches() {
    const { query, matches, current } = this.search;
    for (const rowEl of this.rowsEl.querySelectorAll(".ln.match")) {
      const base = lowerBound(matches, Number(rowEl.dataset.row), (m) => m.row);
      let occurrence = 0;
      const walker = document.createTreeWalker(rowEl.querySelector(".t"), NodeFilter.SHOW_TEXT);
      const nodes = [];
      while (walker.nextNode()) nodes.push(walker.currentNode);
      for (let node of nodes) {
        let at;
        while ((at = node.data.toLowerCase().indexOf(query)) >= 0) {
          const hit = node.splitText(at);
          node = hit.splitText(query.length);
          const mark = document.createElement("mark");
          if (base + occurrence === current) mark.className = "current";
          occurrence++;
          hit.replaceWith(mark);
          mark.append(hit);
        }
      }
    }
  }
}

const clock = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });

function formatTime(ms) {
  return ms === null || ms === undefined || Number.isNaN(ms) ? "--:--:--" : clock.format(ms);
}

/** The first index in sorted `values` whose key is >= target. */
function lowerBound(values, target, key = (v) => v) {
  let lo = 0;
  let hi = values.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (key(values[mid]) < target) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
