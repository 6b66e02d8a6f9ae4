// Antri supervisor pages: keep the server-rendered numbers current.
// The server's numbers are the only truth here: an event on the stream
// (checkin/live.py) only says "point X changed", and the page re-reads that point's
// overview row and slot rows from the poll URL (?market_point=CODE), at most one
// request per ~250 ms however many scans arrive, so a late, repeated or reordered
// event cannot leave a wrong number. While live the page also re-reads everything
// every data-refresh-seconds (what changes with the clock alone: a visit past the
// dwell time, the refused-scans window) and each (re)connection starts with a
// snapshot. When the stream is refused (Redis down, too many streams) or absent, the
// page polls and tries the stream again every 15 s. A 401 (session ended) stops
// everything and shows a "sign in again" notice. Without JavaScript the page reloads.
(function () {
  "use strict";
  var root = document.querySelector("[data-live]");
  if (!root) return;
  var streamUrl = root.getAttribute("data-stream");
  var pollUrl = root.getAttribute("data-poll");
  var pollMs = 1000 * (parseInt(root.getAttribute("data-poll-seconds"), 10) || 5);
  var refreshMs = 1000 * (parseInt(root.getAttribute("data-refresh-seconds"), 10) || 60);
  var DEBOUNCE_MS = 250;
  var source = null, pollTimer = null, retryTimer = null, refreshTimer = null;
  var dirty = {}, debounceTimer = null, inflight = false, again = false;
  var issued = 0, applied = {}; // fetch sequence numbers: an older answer never wins
  var signedOut = false;
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

  function setInside(tr, inside, limit, lvl) {
    tr.setAttribute("data-limit", limit);
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
      gauge.setAttribute("aria-valuemax", limit);
      gauge.firstElementChild.style.width = Math.min(100, (100 * inside) / limit) + "%";
    }
    tr.className = tr.className.replace(/\blevel-\w+/, "") + " level-" + lvl;
  }

  // Returns true when the cell's text changed.
  function setField(scope, name, value) {
    var cells = scope.querySelectorAll('[data-field="' + name + '"]');
    var changed = false;
    for (var i = 0; i < cells.length; i++) {
      if (cells[i].closest("tr[data-slot-id]") && !scope.hasAttribute("data-slot-id")) continue;
      var text = String(value);
      if (cells[i].textContent !== text) {
        cells[i].textContent = text;
        changed = true;
      }
    }
    return changed;
  }

  // The stock cell (issue 15): "—" when the day has no stock, else its four counts.
  function setStock(tr, stock) {
    var cell = tr.querySelector("[data-stock]");
    if (!cell || stock === undefined) return false;
    var changed = cell.getAttribute("data-stock") !== (stock ? "set" : "none");
    cell.setAttribute("data-stock", stock ? "set" : "none");
    cell.querySelector("[data-stock-none]").hidden = !!stock;
    cell.querySelector("[data-stock-set]").hidden = !stock;
    var fields = cell.querySelectorAll("[data-stock-field]");
    for (var i = 0; i < fields.length; i++) {
      var text = stock ? String(stock[fields[i].getAttribute("data-stock-field")]) : "";
      if (fields[i].textContent !== text) { fields[i].textContent = text; changed = true; }
    }
    return changed;
  }

  function stockCount(tr, name) {
    var el = tr.querySelector('[data-stock-field="' + name + '"]');
    return el ? el.textContent : "";
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
    var stockMsg = root.getAttribute("data-msg-stock");
    var items = [];
    var rows = document.querySelectorAll("#occupancy tbody tr[data-point-id]");
    for (var i = 0; i < rows.length; i++) {
      var tr = rows[i];
      var alerts = (tr.getAttribute("data-alerts") || "").split(" ");
      var pill = tr.querySelector("[data-inside]");
      var inside = pill ? parseInt(pill.getAttribute("data-inside"), 10) : 0;
      var limit = parseInt(tr.getAttribute("data-limit"), 10);
      var name = tr.getAttribute("data-name");
      if (alerts.indexOf("at_limit") >= 0) {
        items.push(["full", "at_limit", tr, fill(fullMsg, { name: name, inside: inside, limit: limit })]);
      }
      if (alerts.indexOf("refused_scans") >= 0) {
        var refused = parseInt(tr.getAttribute("data-refused"), 10) || 0;
        items.push(["warn", "refused_scans", tr, fill(refusedMsg, { name: name, count: refused })]);
      }
      if (alerts.indexOf("nearly_sold_out") >= 0 && stockMsg) {
        items.push(["warn", "nearly_sold_out", tr, fill(stockMsg, { name: name, reserved: stockCount(tr, "reserved"), packages: stockCount(tr, "packages") })]);
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

  // Put one overview row (and its slot rows) on the page, unless a newer answer
  // for the same point is already there.
  function applyRow(row, seq) {
    var id = row.market_point.id;
    if (applied[id] !== undefined && applied[id] > seq) return;
    applied[id] = seq;
    var tr = rowOf(id);
    if (!tr) return;
    var pill = tr.querySelector("[data-inside]");
    var changed = !pill || pill.getAttribute("data-inside") !== String(row.inside_now);
    setInside(tr, row.inside_now, row.safe_limit, row.level);
    ["booked_today", "checked_in_today", "no_show_today", "waiting_today"].forEach(function (f) {
      changed = setField(tr, f, row[f]) || changed;
    });
    tr.setAttribute("data-refused", row.refused_recent);
    if (row.gate_conflicts !== undefined) tr.setAttribute("data-conflicts", row.gate_conflicts);
    tr.setAttribute("data-alerts", (row.alerts || []).join(" "));
    changed = setStock(tr, row.stock) || changed;
    (row.slots || []).forEach(function (s) {
      var slotRows = document.querySelectorAll('tr[data-slot-id="' + s.id + '"]');
      for (var i = 0; i < slotRows.length; i++) {
        ["booked", "checked_in", "no_show", "waiting", "remaining"].forEach(function (f) {
          changed = setField(slotRows[i], f, s[f]) || changed;
        });
      }
    });
    if (changed) flash(tr);
  }

  function applyRows(rows, seq) {
    rows.forEach(function (row) { applyRow(row, seq); });
    renderAlerts();
    touched();
  }

  function stopAll() {
    if (source) source.close();
    source = null;
    [pollTimer, refreshTimer].forEach(function (t) { if (t) clearInterval(t); });
    [retryTimer, debounceTimer].forEach(function (t) { if (t) clearTimeout(t); });
    pollTimer = refreshTimer = retryTimer = debounceTimer = null;
  }

  function sessionEnded() {
    if (signedOut) return;
    signedOut = true;
    stopAll();
    setState("signed-out");
    var notice = document.getElementById("signed-out");
    if (notice) notice.hidden = false;
  }

  // GET url and apply its rows; resolves when done (also on failure).
  function fetchRows(url) {
    var seq = ++issued;
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) {
        if (r.status === 401) { sessionEnded(); return null; }
        return r.ok ? r.json() : null;
      })
      .then(function (rows) { if (rows && !signedOut) applyRows(rows, seq); })
      .catch(function () { /* offline for now: the next event or poll tries again */ });
  }

  function pointUrl(code) {
    var url = new URL(pollUrl, window.location.href);
    url.searchParams.set("market_point", code);
    return url.pathname + url.search;
  }

  // Re-read the points that changed: one of them by its code, several at once
  // through the page's whole poll URL. One request in flight at a time.
  function flushDirty() {
    debounceTimer = null;
    if (inflight) { again = true; return; }
    var codes = Object.keys(dirty);
    dirty = {};
    if (!codes.length || signedOut) return;
    inflight = true;
    fetchRows(codes.length === 1 ? pointUrl(codes[0]) : pollUrl).then(function () {
      inflight = false;
      if (again) {
        again = false;
        flushDirty();
      }
    });
  }

  function pointChanged(ev) {
    if (!ev.market_point || !rowOf(ev.point_id)) return; // not on this page
    dirty[ev.market_point] = true;
    if (inflight) { again = true; return; }
    if (!debounceTimer) debounceTimer = setTimeout(flushDirty, DEBOUNCE_MS);
  }

  function onMessage(message) {
    var ev;
    try { ev = JSON.parse(message.data); } catch (e) { return; }
    if (ev.kind === "snapshot") applyRows(ev.points, ++issued);
    else pointChanged(ev);
  }

  function poll() { fetchRows(pollUrl); }

  function startPolling() {
    if (signedOut) return;
    setState("polling");
    if (refreshTimer) clearInterval(refreshTimer);
    refreshTimer = null;
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
    if (signedOut) return;
    source = new EventSource(streamUrl);
    source.onopen = function () {
      setState("live");
      stopPolling();
      if (!refreshTimer) refreshTimer = setInterval(poll, refreshMs);
    };
    source.onmessage = onMessage;
    source.onerror = function () {
      if (signedOut) return;
      if (source && source.readyState === EventSource.CLOSED) {
        // Refused (503: Redis down or too many streams; 401: the poll will say):
        // poll, and try the stream again later.
        source = null;
        startPolling();
        if (!retryTimer) retryTimer = setTimeout(connect, 15000);
      } else {
        startPolling(); // reconnecting by itself; poll meanwhile
      }
    };
  }

  if (streamUrl && window.EventSource) {
    connect();
  } else {
    startPolling();
  }
})();
