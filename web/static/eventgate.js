// eventgate.js — one stream per browser, token refresh, resume. No build step, no dependency.
//
// Why: HTTP/1.1 browsers open at most six connections per origin, and every EventSource holds
// one for good, so a seventh tab of a page that streams hangs (docs/protocol.md, "In the
// browser"). Here the tabs of an origin elect a leader with Web Locks (the lock of a closed tab
// is released, so the next waiting tab takes over); only the leader holds a native EventSource,
// and passes each event to the other tabs with BroadcastChannel. Every tab remembers the last
// cursor it saw, so a new leader resumes where the old one stopped; events a tab already showed
// are dropped, so a takeover shows nothing twice.
//
//   const sub = EventGate.subscribe({url: "/streams", tokenUrl: "/app/token", channels: [...],
//                                    events: ["order.paid"], onEvent(type, data, id) {},
//                                    onState(state, leading) {}});   // sub.close()
//
// tokenUrl answers a POST with JSON {"token": ..., "cursor": ...}; the cursor (optional: the
// server's gate.cursor(channels)) is where the first stream starts, so that even a stream that
// sees no event has a position to resume from: the browser never shows us the id of the stream's
// opening frame. States: "connecting", "live", "down", "revoked" (the stream was ended by a
// revocation: no reconnect).
"use strict";

(() => {
  const MIN_BACKOFF_MS = 500;
  const MAX_BACKOFF_MS = 15000;
  const REMEMBERED = 500; // event keys kept to drop repeats after a takeover

  function subscribe(options) {
    const channels = options.channels || [];
    const name = "eventgate " + options.url + " " + channels.join(",");
    const types = ["eventgate.lost", "eventgate.revoked", ...(options.events || ["message"])];
    const shared = options.shared !== false && self.BroadcastChannel && navigator.locks;
    const bus = shared ? new BroadcastChannel(name) : null;
    const seen = new Set();
    let cursor = "";
    let source = null;
    let timer = null;
    let backoffMs = MIN_BACKOFF_MS;
    let leading = false;
    let state = "";
    let release = null;

    function setState(next) {
      state = next;
      if (options.onState) options.onState(next, leading);
      // with the cursor: a tab that saw no event yet resumes from it if it leads next
      if (leading && bus) bus.postMessage({ state: next, cursor });
    }

    function deliver(type, data, id) {
      if (id) {
        // One channel: the id is the event's; several: its own channel's pair comes first.
        const key = type + " " + id.split(",")[0];
        if (seen.has(key)) return;
        seen.add(key);
        if (seen.size > REMEMBERED) seen.delete(seen.values().next().value);
        cursor = id;
      }
      let value = data;
      try {
        value = JSON.parse(data);
      } catch {}
      if (options.onEvent) options.onEvent(type, value, id);
    }

    function stop() {
      clearTimeout(timer);
      timer = null;
      if (source) source.close();
      source = null;
    }

    function retry() {
      // A refusal (401 once the token expired, 429, 503): EventSource gives up for good, so
      // come back ourselves, later each time, at a random point so that tabs spread out.
      stop();
      setState("down");
      timer = setTimeout(connect, backoffMs / 2 + Math.random() * backoffMs);
      backoffMs = Math.min(backoffMs * 2, MAX_BACKOFF_MS);
    }

    async function connect() {
      stop();
      setState("connecting");
      let token;
      try {
        const answer = await fetch(options.tokenUrl, {
          method: "POST",
          headers: { Accept: "application/json" },
          credentials: "same-origin",
        });
        if (!answer.ok) throw new Error(answer.status);
        const grant = await answer.json();
        token = grant.token;
        // Only the first: a later answer's cursor is "now", and would skip what we missed.
        if (!cursor && grant.cursor) cursor = grant.cursor;
      } catch {
        return retry();
      }
      if (!leading) return;
      let url = options.url + (options.url.includes("?") ? "&" : "?") + "token=";
      url += encodeURIComponent(token);
      for (const channel of channels) url += "&channel=" + encodeURIComponent(channel);
      if (cursor) url += "&lastEventId=" + encodeURIComponent(cursor);
      const stream = (source = new EventSource(url));
      stream.onopen = () => {
        backoffMs = MIN_BACKOFF_MS;
        setState("live");
      };
      for (const type of types) {
        stream.addEventListener(type, (event) => {
          if (stream !== source) return;
          deliver(type, event.data, event.lastEventId);
          if (bus) bus.postMessage({ event: [type, event.data, event.lastEventId] });
        });
      }
      stream.addEventListener("eventgate.token_expired", (event) => {
        // The stream ends; its id is the cursor, even when no event came yet: resume from it.
        if (event.lastEventId) cursor = event.lastEventId;
        if (stream === source) connect();
      });
      stream.addEventListener("eventgate.revoked", () => {
        // The subject was logged out: no fresh token behind the page's back. close() and
        // subscribe again once the page has a user again.
        if (stream !== source) return;
        stop();
        setState("revoked");
      });
      stream.onerror = () => {
        if (stream !== source) return;
        // CONNECTING: the browser retries by itself, sending the cursor it holds (the opening
        // frame's id too); CLOSED: it was refused, so a fresh token and our own cursor.
        if (stream.readyState === EventSource.CLOSED) retry();
        else setState("connecting");
      };
    }

    function lead() {
      leading = true;
      connect();
      return new Promise((resolve) => (release = resolve)); // held until the tab closes
    }

    if (bus) {
      bus.onmessage = ({ data }) => {
        if (data.event) deliver(...data.event);
        else if (data.state && !leading) {
          if (data.cursor) cursor = data.cursor;
          setState(data.state);
        }
        else if (data.hello && leading) bus.postMessage({ state, cursor });
      };
      setState("connecting");
      navigator.locks.request(name, lead);
      bus.postMessage({ hello: 1 }); // the leader, if any, answers with its state
    } else {
      lead();
    }

    return {
      close() {
        leading = false;
        stop();
        if (bus) bus.close();
        if (release) release();
      },
    };
  }

  self.EventGate = { subscribe };
})();
