// flowpivot workspace: the only script. Follows a running hunt's stages (server-sent events) and
// reloads its page when it ends. Everything else works without it.
"use strict";
(function () {
  const stages = document.getElementById("stages");
  if (stages && stages.dataset.live === "1" && window.EventSource) {
    const es = new EventSource(stages.dataset.events);
    es.addEventListener("stage", (ev) => {
      const s = JSON.parse(ev.data);
      const st = document.getElementById("hunt-status");
      if (st) { st.textContent = "running"; }
      const li = stages.querySelector(`li[data-stage="${CSS.escape(s.stage)}"]`);
      if (li) {
        li.className = "done";
        const t = document.createElement("span");
        t.className = "t";
        t.textContent = ` ${s.t} s`;
        li.appendChild(t);
      }
    });
    es.addEventListener("end", (ev) => {
      es.close();
      const st = document.getElementById("hunt-status");
      if (st) { st.textContent = JSON.parse(ev.data).status; }
      window.location.reload();
    });
    es.onerror = () => { es.close(); setTimeout(() => window.location.reload(), 2000); };
  }
  document.body.dataset.ready = "1";
})();
