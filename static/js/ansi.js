// ANSI escape codes to safe HTML, one log line at a time.
//
// The vendored ansi_up does the tokenizing and the SGR state machine (16/256/truecolor, bold, faint,
// italic, underline; cursor and erase codes are dropped). Its HTML output uses inline style
// attributes, which a strict CSP blocks, so we emit classes instead: the 16 colours and text
// attributes are in app.css, and 256/truecolor classes are added once each to a constructed
// stylesheet. Text is escaped here; OSC 8 links survive only as http(s) URLs checked by the URL parser.
import { AnsiUp } from "./vendor/ansi_up/ansi_up.js";

const HTML_ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
export function escapeHtml(text) {
  return text.replace(/[&<>"']/g, (c) => HTML_ESCAPES[c]);
}

const colourSheet = new CSSStyleSheet();
document.adoptedStyleSheets = [...document.adoptedStyleSheets, colourSheet];
const colourClasses = new Set();

function colourClass(kind, rgb) {
  const hex = rgb.map((v) => Math.max(0, Math.min(255, Number(v) | 0)).toString(16).padStart(2, "0")).join("");
  const name = `${kind}-${hex}`;
  if (!colourClasses.has(name)) {
    colourClasses.add(name);
    const prop = kind === "xf" ? "color" : "background-color";
    colourSheet.insertRule(`.log .${name}{${prop}:#${hex}}`, colourSheet.cssRules.length);
  }
  return name;
}

// Plain http(s) URLs in log text become links; anything else (javascript:, data:, ...) stays text.
const URL_IN_TEXT = /\bhttps?:\/\/[^\s<>"'`\x00-\x1f\x7f]+/gi;
const TRAILING = /[.,;:!?)\]}'"]+$/;

function link(href, text) {
  return `<a href="${escapeHtml(href)}" rel="nofollow noopener noreferrer" target="_blank">${text}</a>`;
}

/** Escape text, turning the http(s) URLs in it into links that the URL parser accepts. */
export function linkify(raw) {
  let html = "";
  let last = 0;
  for (const match of raw.matchAll(URL_IN_TEXT)) {
    const candidate = match[0].replace(TRAILING, "");
    let url = null;
    try {
      url = new URL(candidate);
    } catch {
      url = null;
    }
    if (!url || (url.protocol !== "http:" && url.protocol !== "https:")) continue;
    html += escapeHtml(raw.slice(last, match.index)) + link(url.href, escapeHtml(candidate));
    last = match.index + candidate.length;
  }
  return html + escapeHtml(raw.slice(last));
}

class ClassAnsiUp extends AnsiUp {
  transform_to_html(fragment) {
    if (!fragment.text) return "";
    const text = fragment.text.includes("://") ? linkify(fragment.text) : escapeHtml(fragment.text);
    const classes = [];
    if (fragment.bold) classes.push("a-b");
    if (fragment.faint) classes.push("a-f");
    if (fragment.italic) classes.push("a-i");
    if (fragment.underline) classes.push("a-u");
    if (fragment.fg) classes.push(fragment.fg.class_name === "truecolor" ? colourClass("xf", fragment.fg.rgb) : `${fragment.fg.class_name}-fg`);
    if (fragment.bg) classes.push(fragment.bg.class_name === "truecolor" ? colourClass("xb", fragment.bg.rgb) : `${fragment.bg.class_name}-bg`);
    return classes.length ? `<span class="${classes.join(" ")}">${text}</span>` : text;
  }

  process_hyperlink(packet) {
    const text = escapeHtml(packet.text);
    let url;
    try {
      url = new URL(packet.url);
    } catch {
      return text;
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") return text;
    return link(url.href, text);
  }
}

const converter = new ClassAnsiUp();
// OSC sequences other than OSC 8 hyperlinks (window titles and the like) and stray control characters.
const OTHER_OSC = /\x1b\](?!8;)[^\x07\x1b]*(?:\x07|\x1b\\)?/g;
const CONTROL = /[\x00-\x06\x08\x0b-\x1a\x1c-\x1f\x7f]/g;

/** HTML for one line, starting in the SGR state that `prefix` (a run of SGR codes) sets up. */
export function lineToHtml(prefix, text) {
  converter._buffer = "";
  converter.process_ansi({ text: "0" });
  const clean = text.includes("\x1b]") ? text.replace(OTHER_OSC, "") : text;
  const html = converter.ansi_to_html(prefix + clean.replace(CONTROL, ""));
  converter._buffer = ""; // an unfinished escape at the end of a line must not leak into the next
  return html;
}

const ANSI = /\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]/g;

/** The visible text of a line: every escape sequence removed. */
export function stripAnsi(text) {
  return text.includes("\x1b") ? text.replace(ANSI, "").replace(CONTROL, "") : text.replace(CONTROL, "");
}

const SGR = /\x1b\[([0-9;]*)m/g;
const PREFIX_LIMIT = 400;

/** The SGR prefix in force after `line`, given the one before it. Replaying the codes since the last
 * reset reproduces the state exactly, so each line can be rendered on its own, in any order. */
export function nextPrefix(prefix, line) {
  if (!line.includes("\x1b[")) return prefix;
  SGR.lastIndex = 0;
  let match;
  while ((match = SGR.exec(line))) {
    const first = match[1].split(";")[0];
    prefix = first === "" || Number(first) === 0 ? match[0] : prefix + match[0];
  }
  if (prefix.length > PREFIX_LIMIT) {
    const cut = prefix.indexOf("\x1b[", prefix.length - PREFIX_LIMIT);
    if (cut > 0) prefix = prefix.slice(cut);
  }
  return prefix;
}

/** Only the SGR codes of a piece of text, in order. */
export function sgrOnly(text) {
  return text.includes("\x1b[") ? (text.match(SGR) || []).join("") : "";
}
