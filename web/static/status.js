// eventgate status page: draw each status event the gateway sends about itself.
//
// The page gets a token for the status channel from its own app, opens an EventSource, and
// for each `status` event updates the counters, the worker table and the chart. Events per
// second come from the change of the delivered total over the last RATE_WINDOW_MS (workers
// report every few seconds, out of step with the status events, so two neighbouring events
// may show the same total; a restarted worker starts from 0, so a drop starts a new window).
// Like the demo, it fetches a new token and reconnects itself when the browser gives up (401
// after the token expired).
"use strict";

(() => {
  const POINTS = 120;
  const RATE_WINDOW_MS = 5000;
  const WIDTH = 600;
  const HEIGHT = 160;
  const eventType = document.querySelector("main").dataset.eventType;
  const $ = (id) => document.getElementById(id);
  const history = [];
  const totals = [];
  let updates = 0;
  let source = null;
  let lastEventId = "";
  let backoffMs = 500;

  function setStatus(text, state) {
    $("status").textContent = text;
    $("status").dataset.state = state;
  }

  function bytes(value) {
    if (typeof value !== "number") return "–";
    const units = ["B", "KiB", "MiB", "GiB"];
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
    return `${value.toFixed(unit ? 1 : 0)} ${units[unit]}`;
  }

  function ms(value) {
    if (typeof value === "number") return `${(value * 1000).toPrecision(3)} ms`;
    return value ? String(value) : "–";
  }

  function line(id, values) {
    const max = Math.max(1, ...values);
    const step = WIDTH / (POINTS - 1);
    const offset = POINTS - values.length;
    const points = values.map((v, i) =>
      `${((offset + i) * step).toFixed(1)},${(HEIGHT - 4 - (v / max) * (HEIGHT - 8)).toFixed(1)}`);
    $(id).setAttribute("points", points.join(" "));
    return max;
  }

  function draw() {
    const rateMax = line("rate-line", history.map((p) => p.rate));
    const streamsMax = line("streams-line", history.map((p) => p.streams));
    $("scale").textContent = `max ${rateMax.toFixed(1)} events/s, ${streamsMax} streams`;
  }

  function workerRow(worker) {
    const row = document.createElement("tr");
    const cells = [worker.worker, worker.streams, worker.channels, bytes(worker.queued_bytes),
      ms(worker.lag_p99_seconds), worker.delivered, worker.reconnects,
      worker.redis_connected ? "up" : "DOWN"];
    for (const value of cells) {
      const cell = document.createElement("td");
      cell.textContent = String(value ?? "–");
      row.append(cell);
    }
    return row;
  }

  function show(status) {
    const now = status.totals;
    const at = Date.now();
    if (totals.length && now.delivered < totals[totals.length - 1].delivered) totals.length = 0;
    totals.push({ at, delivered: now.delivered });
    while (totals.length > 2 && at - totals[1].at >= RATE_WINDOW_MS) totals.shift();
    const first = totals[0];
    const rate = at > first.at ? (now.delivered - first.delivered) / ((at - first.at) / 1000) : 0;
    history.push({ rate, streams: now.streams });
    while (history.length > POINTS) history.shift();
    updates += 1;
    $("streams").textContent = now.streams;
    $("rate").textContent = rate.toFixed(1);
    $("delivered").textContent = now.delivered;
    $("channels").textContent = now.channels;
    $("workers").textContent = now.workers;
    $("queued").textContent = bytes(now.queued_bytes);
    $("lag").textContent = ms(now.lag_p99_seconds);
    $("memory").textContent = bytes(status.redis.used_memory_bytes);
    $("updates").textContent = updates;
    $("worker-table").tBodies[0].replaceChildren(...status.workers.map(workerRow));
    draw();
  }

  async function connect() {
    if (source) source.close();
    setStatus("connecting…", "connecting");
    let token;
    try {
      const response = await fetch("/status/token", { method: "POST", credentials: "same-origin" });
      if (!response.ok) throw new Error(String(response.status));
      token = (await response.json()).token;
    } catch {
      setTimeout(connect, backoffMs);
      backoffMs = Math.min(backoffMs * 2, 15000);
      return;
    }
    let url = "/streams?token=" + encodeURIComponent(token);
    if (lastEventId) url += "&lastEventId=" + encodeURIComponent(lastEventId);
    const stream = new EventSource(url);
    source = stream;
    stream.onopen = () => { backoffMs = 500; setStatus("live", "live"); };
    stream.addEventListener(eventType, (event) => {
      if (event.lastEventId) lastEventId = event.lastEventId;
      try { show(JSON.parse(event.data)); } catch { /* a malformed event is skipped */ }
    });
    stream.addEventListener("eventgate.token_expired", () => {
      if (stream === source) connect();
    });
    stream.onerror = () => {
      if (stream !== source) return;
      if (stream.readyState === EventSource.CLOSED) {
        setTimeout(connect, backoffMs);
        backoffMs = Math.min(backoffMs * 2, 15000);
      } else {
        setStatus("reconnecting…", "connecting");
      }
    };
  }

  connect();
})();
