// eventgate live demo: post messages, show every message of the demo channel live.
//
// The stream needs a token, which this page asks its own app for. EventSource reconnects by
// itself after a dropped connection (sending Last-Event-ID), but it gives up for good on a refusal
// such as 401 once the token has expired: then we fetch a fresh token and reconnect ourselves,
// passing the last event id as `lastEventId` so the server replays what this tab missed.
"use strict";

(() => {
  const MIN_BACKOFF_MS = 500;
  const MAX_BACKOFF_MS = 15000;
  const MAX_SHOWN = 200;

  const statusLine = document.getElementById("status");
  const notice = document.getElementById("notice");
  const list = document.getElementById("messages");
  const form = document.getElementById("send");
  const input = document.getElementById("text");
  const formError = document.getElementById("form-error");

  let source = null;
  let lastEventId = "";
  let backoffMs = MIN_BACKOFF_MS;
  let reconnectTimer = null;

  function setStatus(text, state) {
    statusLine.textContent = text;
    statusLine.dataset.state = state;
  }

  function showNotice(text) {
    notice.textContent = text;
    notice.hidden = false;
  }

  function remember(event) {
    if (event.lastEventId) lastEventId = event.lastEventId;
  }

  function showMessage(event) {
    let message;
    try {
      message = JSON.parse(event.data);
    } catch {
      return;
    }
    const item = document.createElement("li");
    const time = document.createElement("time");
    const at = new Date(message.at);
    time.dateTime = message.at;
    time.textContent = Number.isNaN(at.getTime()) ? "" : at.toLocaleTimeString();
    item.append(time, document.createTextNode(String(message.text ?? "")));
    const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
    list.append(item);
    while (list.children.length > MAX_SHOWN) list.firstElementChild.remove();
    if (atBottom) list.scrollTop = list.scrollHeight;
  }

  async function fetchToken() {
    const response = await fetch("/demo/token", {
      method: "POST",
      headers: { Accept: "application/json" },
      credentials: "same-origin",
    });
    if (!response.ok) throw new Error(`token request failed (${response.status})`);
    return (await response.json()).token;
  }

  function streamUrl(token) {
    let url = "/streams?token=" + encodeURIComponent(token);
    if (lastEventId) url += "&lastEventId=" + encodeURIComponent(lastEventId);
    return url;
  }

  function closeSource() {
    if (source) source.close();
    source = null;
  }

  function reconnectLater(delayMs) {
    closeSource();
    if (reconnectTimer !== null) return;
    setStatus(`disconnected — reconnecting in ${Math.ceil(delayMs / 1000)} s…`, "down");
    reconnectTimer = setTimeout(connect, delayMs);
    backoffMs = Math.min(backoffMs * 2, MAX_BACKOFF_MS);
  }

  async function connect() {
    reconnectTimer = null;
    closeSource();
    setStatus("connecting…", "connecting");
    let token;
    try {
      token = await fetchToken();
    } catch {
      reconnectLater(backoffMs);
      return;
    }
    const stream = new EventSource(streamUrl(token));
    source = stream;
    stream.onopen = () => {
      backoffMs = MIN_BACKOFF_MS;
      setStatus("live", "live");
    };
    stream.addEventListener("demo.message", (event) => {
      remember(event);
      showMessage(event);
    });
    stream.addEventListener("eventgate.lost", (event) => {
      remember(event);
      showNotice("Some events were lost: they were no longer stored when this tab caught up.");
    });
    stream.addEventListener("eventgate.token_expired", (event) => {
      // The server ends the stream; reconnect at once with a fresh token instead of waiting.
      remember(event);
      if (stream === source) reconnectLater(0);
    });
    stream.onerror = () => {
      if (stream !== source) return;
      if (stream.readyState === EventSource.CLOSED) {
        reconnectLater(backoffMs); // fatal (e.g. 401 after the token expired): new token
      } else {
        setStatus("reconnecting…", "connecting"); // the browser retries by itself
      }
    };
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    const button = form.querySelector("button");
    button.disabled = true;
    formError.textContent = "";
    try {
      const response = await fetch("/demo/messages", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        credentials: "same-origin",
        body: JSON.stringify({ text }),
      });
      if (response.ok) {
        input.value = "";
      } else {
        const body = await response.json().catch(() => null);
        formError.textContent = body?.message ?? `sending failed (${response.status})`;
      }
    } catch {
      formError.textContent = "sending failed: the server did not answer.";
    } finally {
      button.disabled = false;
      input.focus();
    }
  });

  connect();
})();
