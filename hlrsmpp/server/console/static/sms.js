// The SMS composer's live counter: as the text is typed, how many SMS it is (the
// server's count, GET /console/sms/segments). Without this file, "Count" asks the same.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const text = document.getElementById("text");
  const out = document.getElementById("sms-count");
  if (!text || !out) return;
  const url = text.getAttribute("data-count-url");
  let timer = null, asked = 0;

  function show(c) {
    out.textContent = "";
    const parts = [[c.encoding, "sms-encoding", ""], [c.characters, "sms-characters", " characters"],
                   [c.segments, "sms-segments", " SMS"], [c.left, "sms-left", " left in this SMS"]];
    parts.forEach(([value, id, label], i) => {
      if (i) out.append(" · ");
      const s = document.createElement("span");
      s.id = id;
      s.textContent = String(value);
      out.append(s, label);
    });
  }

  async function count() {
    const n = ++asked;
    if (!text.value) { out.textContent = "Type the text of the SMS."; return; }
    try {
      const resp = await fetch(url + "?text=" + encodeURIComponent(text.value),
                               {credentials: "same-origin", headers: {"Accept": "application/json"}});
      if (n !== asked) return;  // an older answer than the text
      const body = await resp.json();
      if (resp.ok) show(body);
      else out.textContent = (body.error && body.error.message) || "cannot count this text";
    } catch (e) { /* offline: the Count button still works */ }
  }

  text.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(count, 150); });
  if (text.value) count();
});
