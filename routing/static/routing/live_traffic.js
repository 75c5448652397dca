// The live traffic page (templates/admin/routing/live_traffic.html): one row per finished
// request, newest first, from the Server-Sent Events stream (routing/live/consumers.py).
// The server applies the filters; changing one reopens the stream with the new query.
// Text goes in with textContent only: names come from configuration, never markup.
(function () {
  "use strict";

  var table = document.getElementById("live-traffic-table");
  if (!table) {
    return;
  }
  var rows = document.getElementById("live-traffic-rows");
  var waiting = document.getElementById("live-traffic-waiting");
  var statusLabel = document.getElementById("live-traffic-status");
  var countLabel = document.getElementById("live-traffic-count");
  var form = document.getElementById("live-filters");
  var tenantInput = document.getElementById("live-filter-tenant");
  var statusSelect = document.getElementById("live-filter-status");
  var pauseButton = document.getElementById("live-traffic-pause");
  var clearButton = document.getElementById("live-traffic-clear");
  var streamUrl = table.getAttribute("data-stream-url");
  var auditUrl = table.getAttribute("data-audit-url");
  var maxRows = parseInt(table.getAttribute("data-max-rows"), 10) || 200;

  var source = null;
  var seen = 0;
  var paused = false;

  function setState(state, text) {
    statusLabel.setAttribute("data-state", state);
    statusLabel.textContent = text;
  }

  function query() {
    var params = new URLSearchParams();
    var tenant = tenantInput.value.trim();
    if (tenant) {
      params.set("tenant", tenant);
    }
    if (statusSelect.value) {
      params.set("status", statusSelect.value);
    }
    return params.toString();
  }

  function cell(row, text, className) {
    var td = document.createElement("td");
    td.textContent = text;
    if (className) {
      td.className = className;
    }
    row.appendChild(td);
    return td;
  }

  function ms(value) {
    return value === null || value === undefined ? "—" : value + " ms";
  }

  function cost(value) {
    var n = Number(value);
    if (!n) {
      return "$0";
    }
    return "$" + (n < 0.01 ? n.toPrecision(3) : n.toFixed(4));
  }

  function time(iso) {
    var date = new Date(iso);
    return isNaN(date.getTime()) ? iso : date.toLocaleTimeString([], { hour12: false }) +
      "." + String(date.getMilliseconds()).padStart(3, "0");
  }

  function render(event) {
    var row = document.createElement("tr");
    row.id = "live-request-" + event.id;
    row.setAttribute("data-request-id", event.id);
    row.setAttribute("data-tenant", event.tenant);
    row.setAttribute("data-status", String(event.status));
    row.setAttribute("data-worker", event.worker);
    row.className = "fresh " + (event.status >= 400 ? "status-error" : "status-ok");
    var when = cell(row, time(event.time), "time");
    when.title = event.time;
    cell(row, event.tenant || "—", "tenant");
    var route = cell(row, event.route || "—", "route");
    route.title = event.endpoint + (event.stream ? " (streamed)" : "");
    cell(row, event.provider || "—", "provider");
    cell(row, event.model || "—", "model");
    var status = cell(row, String(event.status), "number status");
    status.title = event.outcome;
    cell(row, ms(event.latency_ms), "number latency");
    cell(row, ms(event.ttft_ms), "number ttft");
    cell(row, event.prompt_tokens + " / " + event.completion_tokens, "number tokens");
    var money = cell(row, cost(event.cost_usd), "number cost");
    money.setAttribute("data-cost", event.cost_usd);
    cell(row, event.fallback ? "yes (" + event.attempts + " attempts)" : "—", "fallback");
    var link = document.createElement("a");
    link.href = auditUrl + "?q=" + encodeURIComponent(event.id);
    link.textContent = event.id;
    link.title = event.id + ": its audit row (written a moment after the request ends); served by " +
      event.worker;
    var linkCell = cell(row, "", "request");
    linkCell.appendChild(link);
    return row;
  }

  function onRequest(message) {
    var event;
    try {
      event = JSON.parse(message.data);
    } catch (error) {
      return;
    }
    seen += 1;
    countLabel.textContent = seen + (seen === 1 ? " request" : " requests");
    if (paused) {
      return;
    }
    if (waiting.parentNode) {
      waiting.parentNode.removeChild(waiting);
    }
    rows.insertBefore(render(event), rows.firstChild);
    while (rows.rows.length > maxRows) {
      rows.deleteRow(rows.rows.length - 1);
    }
  }

  function connect() {
    if (source) {
      source.close();
    }
    var q = query();
    setState("connecting", "Connecting…");
    source = new EventSource(streamUrl + (q ? "?" + q : ""));
    source.addEventListener("open", function () {
      setState("open", paused ? "Live (paused)" : "Live");
    });
    source.addEventListener("request", onRequest);
    source.addEventListener("error", function () {
      // CONNECTING: the browser retries by itself; CLOSED: refused (403, 400) or ended.
      if (source.readyState === EventSource.CLOSED) {
        setState("closed", "Disconnected: reload the page (logged out, or a bad filter?)");
      } else {
        setState("connecting", "Reconnecting…");
      }
    });
    if (window.history && window.history.replaceState) {
      window.history.replaceState(null, "", window.location.pathname + (q ? "?" + q : ""));
    }
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    connect();
  });
  statusSelect.addEventListener("change", connect);
  tenantInput.addEventListener("change", connect);
  pauseButton.addEventListener("click", function () {
    paused = !paused;
    pauseButton.textContent = paused ? "Resume" : "Pause";
    pauseButton.setAttribute("aria-pressed", paused ? "true" : "false");
    if (statusLabel.getAttribute("data-state") === "open") {
      setState("open", paused ? "Live (paused)" : "Live");
    }
  });
  clearButton.addEventListener("click", function () {
    while (rows.rows.length) {
      rows.deleteRow(0);
    }
    rows.appendChild(waiting);
    seen = 0;
    countLabel.textContent = "0 requests";
  });
  window.addEventListener("beforeunload", function () {
    if (source) {
      source.close();
    }
  });
  connect();
})();
