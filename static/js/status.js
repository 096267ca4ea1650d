// Status page: live refresh over a websocket with a polling fallback, relative times, and keyboard
// navigation of the uptime bars. Frames are a doorbell carrying the page's sequence number; the
// content always comes from the server (the cached HTML fragment), so a missed frame costs nothing.
// The websocket (reconnect, backoff) is the LiveSocket every live page shares.
import { LiveSocket } from "./live.js";

{
  var live = document.getElementById("status-live");
  var announce = document.getElementById("status-announce");
  var POLL_MS = 15000;

  function relative(iso) {
    var seconds = Math.round((Date.now() - Date.parse(iso)) / 1000);
    var units = [["year", 31536000], ["month", 2592000], ["day", 86400], ["hour", 3600], ["minute", 60]];
    for (var i = 0; i < units.length; i++) {
      var n = Math.floor(seconds / units[i][1]);
      if (n >= 1) return n + " " + units[i][0] + (n === 1 ? "" : "s") + " ago";
    }
    return "just now";
  }

  function refreshRelativeTimes(root) {
    var items = (root || document).querySelectorAll("[data-relative]");
    for (var i = 0; i < items.length; i++) items[i].textContent = relative(items[i].getAttribute("data-relative"));
  }

  // Uptime bars: one tab stop per bar; arrows, Home and End move between days; Enter opens the
  // day's first incident.
  document.addEventListener("keydown", function (event) {
    var day = event.target.closest && event.target.closest(".uptime-bar .day");
    if (!day) return;
    var days = Array.prototype.slice.call(day.parentNode.children).filter(function (d) {
      return d.offsetParent !== null;
    });
    var index = days.indexOf(day), next = null;
    if (event.key === "ArrowLeft") next = days[Math.max(0, index - 1)];
    else if (event.key === "ArrowRight") next = days[Math.min(days.length - 1, index + 1)];
    else if (event.key === "Home") next = days[0];
    else if (event.key === "End") next = days[days.length - 1];
    else if (event.key === "Enter") {
      var link = day.querySelector("a");
      if (link) window.location.href = link.href;
      return;
    } else return;
    event.preventDefault();
    day.setAttribute("tabindex", "-1");
    next.setAttribute("tabindex", "0");
    next.focus();
  });

  refreshRelativeTimes();
  setInterval(refreshRelativeTimes, 30000);
  if (live) follow(live);

  function follow(live) {
    // `wanted` is the highest sequence any frame or poll has named; `shown` the one on screen. A
    // sequence that arrives while a refetch runs only raises `wanted`, and the refetch, when it ends,
    // fetches again if the page is still behind: no frame is lost to an in-flight refetch.
    var shown = Number(live.getAttribute("data-seq"));
    var wanted = shown, fetching = false, timer = null, pollTimer = null, failures = 0;

    function schedule(delay) {
      clearTimeout(timer);
      timer = setTimeout(function () { timer = null; refetch(); }, delay);
    }

    function refetch() {
      if (fetching || wanted <= shown) return;
      fetching = true;
      var before = shown;
      fetch(live.getAttribute("data-fragment-url"), { credentials: "same-origin", cache: "no-store" })
        .then(function (response) {
          if (!response.ok) throw new Error("HTTP " + response.status);
          var seq = Number(response.headers.get("X-Status-Seq"));
          return response.text().then(function (html) { return { seq: seq, html: html }; });
        })
        .then(function (result) {
          if (result.seq > wanted) wanted = result.seq;
          if (result.seq <= shown) return;
          shown = result.seq;
          live.innerHTML = result.html;
          live.setAttribute("data-seq", String(shown));
          refreshRelativeTimes(live);
          var title = live.querySelector("h1");
          if (announce && title) announce.textContent = "Updated: " + title.textContent.trim();
        })
        .catch(function () { /* retried below, with backoff */ })
        .then(function () {
          fetching = false;
          if (wanted <= shown) return;
          // Still behind. A sequence arrived meanwhile: fetch again now. The fetch failed or brought
          // nothing newer: try again with backoff, so an unwell server is not hammered.
          if (shown > before) failures = 0;
          schedule(shown > before ? 0 : Math.min(30000, 1000 * Math.pow(2, failures++)));
        });
    }

    function seen(seq) {
      if (seq > wanted) wanted = seq;
      if (wanted <= shown || fetching) return;  // a running refetch checks `wanted` when it ends
      // Several frames often arrive together (one per saved row); fetch once for all of them.
      schedule(150);
    }

    function poll() {
      fetch(live.getAttribute("data-seq-url"), { cache: "no-store" })
        .then(function (r) { return r.json(); })
        .then(function (data) { seen(data.seq); })
        .catch(function () {});
    }

    new LiveSocket(function () { return live.getAttribute("data-ws-path"); }, {
      // The first frame after every (re)connect carries the current sequence, so the page catches up.
      onFrame: function (frame) { if (frame.type === "status.changed") seen(frame.seq); },
      onStatus: function (status) {
        if (status === "live") {
          clearInterval(pollTimer);
          pollTimer = null;
        } else if (status === "offline" && !pollTimer) {
          pollTimer = setInterval(poll, POLL_MS);
        }
      },
    });
  }
}
