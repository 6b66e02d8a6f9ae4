// Antri supervisor pages: keep the server-rendered numbers current.
// With a stream URL (Redis configured) an EventSource receives every check-in,
// check-out, booking and cancellation (checkin/live.py); EventSource reconnects by
// itself after a network drop, and each (re)connection starts with a snapshot. When
// the stream is refused (Redis down) or absent, the page polls the JSON overview and
// tries the stream again every 15 s. Without JavaScript the page refreshes itself.
(function () {
  "use strict";
  var root = document.querySelector("[data-live]");
  if (!root) return;
  var streamUrl = root.getAttribute("data-stream");
  var pollUrl = root.getAttribute("data-poll");
  var pollMs = 1000 * (parseInt(root.getAttribute("data-poll-seconds"), 10) || 5);
  var source = null, pollTimer = null, retryTimer = null;
  var LEVEL_PILL = { ok: "ok", warn: "warn", full: "bad" };

  function rowOf(pointId) {
    return document.querySelector('tr[data-point-id="' + pointId + '"]');
  }

  function setState(state) {
    root.setAttribute("data-state", state);
    var texts = root.querySelectorAll("[data-state-text]");
    for (var i = 0; i < texts.length; i++) {
      texts[i].hidden = texts[i].getAttribute("data-state-text") !== state;
    }
  }

  function touched() {
    var updated = document.getElementById("updated");
    if (updated) {
      updated.textContent = new Date().toLocaleTimeString("en-GB", {
        timeZone: "Asia/Jakarta", hour12: false
      });
    }
  }

  function level(inside, limit) {
    if (inside >= limit) return "full";
    return inside >= 0.8 * limit ? "warn" : "ok";
  }

  function setInside(tr, inside, limit) {
    limit = limit || parseInt(tr.getAttribute("data-limit"), 10);
    tr.setAttribute("data-limit", limit);
    var lvl = level(inside, limit);
    var pill = tr.querySelector("[data-inside]");
    if (pill) {
      pill.setAttribute("data-inside", inside);
      pill.textContent = inside + " / " + limit;
      pill.className = "pill " + LEVEL_PILL[lvl];
    }
    var gauge = tr.querySelector(".gauge");
    if (gauge) {
      gauge.className = "gauge " + lvl;
      gauge.setAttribute("aria-valuenow", inside);
      gauge.firstElementChild.style.width = Math.min(100, (100 * inside) / limit) + "%";
    }
    tr.className = tr.className.replace(/\blevel-\w+/, "") + " level-" + lvl;
  }

  function setField(scope, name, value) {
    var cell = scope && scope.querySelector('[data-field="' + name + '"]');
    if (cell) cell.textContent = Math.max(0, value);
  }

  function addToField(scope, name, delta) {
    var cell = scope && scope.querySelector('[data-field="' + name + '"]');
    if (cell) cell.textContent = Math.max(0, (parseInt(cell.textContent, 10) || 0) + delta);
  }

  function flash(tr) {
    tr.classList.remove("changed");
    void tr.offsetWidth; // restart the animation
    tr.classList.add("changed");
  }

  function fill(template, values) {
    return template.replace(/\{(\w+)\}/g, function (_, key) { return values[key]; });
  }

  function renderAlerts() {
    var list = document.getElementById("alerts");
    if (!list) return;
    var fullMsg = root.getAttribute("data-msg-full");
    var refusedMsg = root.getAttribute("data-msg-refused");
    var conflictsMsg = root.getAttribute("data-msg-conflicts");
    var items = [];
    var rows = document.querySelectorAll("#occupancy tbody tr[data-point-id]");
    for (var i = 0; i < rows.length; i++) {
      var tr = rows[i];
      var pill = tr.querySelector("[data-inside]");
      var inside = pill ? parseInt(pill.getAttribute("data-inside"), 10) : 0;
      var limit = parseInt(tr.getAttribute("data-limit"), 10);
      var name = tr.getAttribute("data-name");
      if (inside >= limit) {
        items.push(["full", "at_limit", tr, fill(fullMsg, { name: name, inside: inside, limit: limit })]);
      }
      var refused = parseInt(tr.getAttribute("data-refused"), 10) || 0;
      if (refused >= 5) {
        items.push(["warn", "refused_scans", tr, fill(refusedMsg, { name: name, count: refused })]);
      }
      var conflicts = parseInt(tr.getAttribute("data-conflicts"), 10) || 0;
      if (conflicts > 0 && conflictsMsg) {
        items.push(["warn", "gate_conflicts", tr, fill(conflictsMsg, { name: name, count: conflicts })]);
      }
    }
    list.textContent = "";
    items.forEach(function (item) {
      var li = document.createElement("li");
      li.className = "alert " + item[0];
      li.setAttribute("data-alert", item[1]);
      li.setAttribute("data-point-id", item[2].getAttribute("data-point-id"));
      li.textContent = item[3];
      list.appendChild(li);
    });
    var none = document.getElementById("no-alerts");
    if (none) none.hidden = items.length > 0;
  }

  function applyRow(row) {
    var tr = rowOf(row.market_point.id);
    if (!tr) return;
    setInside(tr, row.inside_now, row.safe_limit);
    ["booked_today", "checked_in_today", "no_show_today", "waiting_today"].forEach(function (f) {
      setField(tr, f, row[f]);
    });
    tr.setAttribute("data-refused", row.refused_recent);
    if (row.gate_conflicts !== undefined) tr.setAttribute("data-conflicts", row.gate_conflicts);
  }

  function applyRows(rows) {
    rows.forEach(applyRow);
    renderAlerts();
    touched();
  }

  function applyEvent(ev) {
    if (ev.kind === "snapshot") return applyRows(ev.points);
    var tr = rowOf(ev.point_id);
    if (!tr) return;
    var slot = ev.slot_id ? document.querySelector('tr[data-slot-id="' + ev.slot_id + '"]') : null;
    if (ev.inside_now !== null && ev.inside_now !== undefined) {
      setInside(tr, ev.inside_now, ev.safe_limit);
    }
    if (ev.kind === "check_in") {
      addToField(tr, "checked_in_today", 1);
      addToField(slot, "checked_in", 1);
    } else if (ev.kind === "undo") {
      addToField(tr, "checked_in_today", -1);
      addToField(slot, "checked_in", -1);
    } else if (ev.kind === "booking" || ev.kind === "cancellation") {
      var delta = ev.kind === "booking" ? 1 : -1;
      addToField(tr, "booked_today", delta);
      addToField(slot, "booked", delta);
      addToField(slot, "remaining", -delta);
    } else if (ev.kind === "refused") {
      tr.setAttribute("data-refused", (parseInt(tr.getAttribute("data-refused"), 10) || 0) + 1);
    }
    flash(tr);
    renderAlerts();
    touched();
  }

  function poll() {
    fetch(pollUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (rows) { if (rows) applyRows(rows); })
      .catch(function () { /* offline for now: the next poll tries again */ });
  }

  function startPolling() {
    setState("polling");
    if (pollTimer) return;
    poll();
    pollTimer = setInterval(poll, pollMs);
  }

  function stopPolling() {
    if (pollTimer) clearInterval(pollTimer);
    pollTimer = null;
  }

  function connect() {
    retryTimer = null;
    source = new EventSource(streamUrl);
    source.onopen = function () {
      setState("live");
      stopPolling();
    };
    source.onmessage = function (message) {
      applyEvent(JSON.parse(message.data));
    };
    source.onerror = function () {
      if (source.readyState === EventSource.CLOSED) {
        // Refused (503 while Redis is down): poll, and try the stream again later.
        source = null;
        startPolling();
        if (!retryTimer) retryTimer = setTimeout(connect, 15000);
      } else {
        setState("polling"); // reconnecting by itself; poll meanwhile
        startPolling();
      }
    };
  }

  if (streamUrl && window.EventSource) {
    connect();
  } else {
    startPolling();
  }
})();
