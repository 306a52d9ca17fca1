// eventgate live demo: post messages, show every message of the demo channel live.
//
// The stream itself is eventgate.js: all tabs of this page share one EventSource (a seventh tab
// would hang otherwise on HTTP/1.1), it fetches a fresh token from this app when the old one
// expires, and it resumes from the last cursor. `?shared=0` gives each tab its own stream (to
// see the six-connection limit); `?ttl=N` asks for N-second tokens (to see the refresh).
"use strict";

(() => {
  const MAX_SHOWN = 200;

  const statusLine = document.getElementById("status");
  const notice = document.getElementById("notice");
  const list = document.getElementById("messages");
  const form = document.getElementById("send");
  const input = document.getElementById("text");
  const formError = document.getElementById("form-error");

  function setStatus(text, state) {
    statusLine.textContent = text;
    statusLine.dataset.state = state;
  }

  function showNotice(text) {
    notice.textContent = text;
    notice.hidden = false;
  }

  function showMessage(message) {
    if (!message || typeof message !== "object") return;
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

  const STATES = {
    connecting: "connecting…",
    live: "live",
    down: "disconnected — reconnecting…",
    revoked: "ended: access revoked",
  };
  const query = new URLSearchParams(location.search);
  const ttl = query.get("ttl");

  EventGate.subscribe({
    url: "/streams",
    tokenUrl: "/demo/token" + (ttl ? "?ttl=" + encodeURIComponent(ttl) : ""),
    events: ["demo.message"],
    shared: query.get("shared") !== "0",
    onEvent(type, data) {
      if (type === "demo.message") showMessage(data);
      else if (type === "eventgate.lost") {
        showNotice("Some events were lost: they were no longer stored when this tab caught up.");
      }
    },
    onState(state, leading) {
      setStatus(STATES[state] ?? state, state);
      statusLine.dataset.leader = String(leading);
    },
  });

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
})();
