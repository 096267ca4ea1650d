// Status page: live refresh over a websocket with a polling fallback, relative times, and keyboard
// navigation of the uptime bars. Frames are a doorbell carrying the page's sequence number; the
// content always comes from the server (the cached HTML fragment), so a missed frame costs nothing.
(function () {
  "use strict";
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
  if (!live) return;

  var shown = Number(live.getAttribute("data-seq"));
  var pending = null, fetching = false, socket = null, pollTimer = null, retryMs = 1000;

  function refetch() {
    if (fetching) return;
    fetching = true;
    fetch(live.getAttribute("data-fragment-url"), { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        var seq = Number(response.headers.get("X-Status-Seq"));
        return response.text().then(function (html) { return { seq: seq, html: html }; });
      })
      .then(function (result) {
        if (result.seq < shown) return;
        shown = result.seq;
        live.innerHTML = result.html;
        live.setAttribute("data-seq", String(shown));
        refreshRelativeTimes(live);
        var title = live.querySelector("h1");
        if (announce && title) announce.textContent = "Updated: " + title.textContent.trim();
      })
      .catch(function () { /* the next frame or poll tries again */ })
      .then(function () { fetching = false; if (pending !== null && pending > shown) seen(pending); });
  }

  function seen(seq) {
    if (seq <= shown) return;
    pending = seq;
    // Several frames often arrive together (one per saved row); fetch once for all of them.
    clearTimeout(seen.timer);
    seen.timer = setTimeout(function () { pending = null; refetch(); }, 150);
  }

  function poll() {
    fetch(live.getAttribute("data-seq-url"), { cache: "no-store" })
      .then(function (r) { return r.json(); })
      .then(function (data) { seen(data.seq); })
      .catch(function () {});
  }

  function startPolling() {
    if (!pollTimer) pollTimer = setInterval(poll, POLL_MS);
  }

  function stopPolling() {
    clearInterval(pollTimer);
    pollTimer = null;
  }

  function connect() {
    if (!("WebSocket" in window)) { startPolling(); return; }
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + window.location.host + live.getAttribute("data-ws-path"));
    socket.onopen = function () { retryMs = 1000; stopPolling(); };
    socket.onmessage = function (message) {
      var frame = JSON.parse(message.data);
      if (frame.type === "status.changed") seen(frame.seq);
    };
    socket.onclose = function () {
      startPolling();
      setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, 60000);
    };
  }

  connect();
})();
