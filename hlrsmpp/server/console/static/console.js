// The console's live parts. Every page works without this file: it only saves reloads.
"use strict";

// An element with data-poll="URL" is replaced by the HTML fragment at URL, every 0.7 s,
// until the fragment holds an element with data-done (results in, a job finished).
function poll(el) {
  const url = el.getAttribute("data-poll");
  let delay = 700;
  async function tick() {
    try {
      const resp = await fetch(url, {credentials: "same-origin", headers: {"Accept": "text/html"}});
      if (resp.ok) {
        el.innerHTML = await resp.text();
        if (el.querySelector("[data-done]")) {
          for (const b of document.querySelectorAll("[data-enable-when-done]")) b.disabled = false;
          return;
        }
        delay = 700;
      } else if (resp.status >= 400 && resp.status < 500) {
        return;  // logged out, or gone: a reload says why
      } else {
        delay = Math.min(delay * 2, 10000);
      }
    } catch (e) {
      delay = Math.min(delay * 2, 10000);
    }
    setTimeout(tick, delay);
  }
  if (!el.querySelector("[data-done]")) setTimeout(tick, delay);
}

// A button with data-confirm asks before its form is sent (buttons that a poll brings in
// later too).
document.addEventListener("click", (ev) => {
  const b = ev.target.closest && ev.target.closest("[data-confirm]");
  if (b && !window.confirm(b.getAttribute("data-confirm"))) ev.preventDefault();
});

document.addEventListener("DOMContentLoaded", () => {
  for (const el of document.querySelectorAll("[data-poll]")) poll(el);
});
