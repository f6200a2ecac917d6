/* flowpivot HTML report: graph (Cytoscape.js), timelines (Chart.js), sortable tables, copy buttons.
   Every value from the hunt is placed with textContent, never parsed as HTML. */
(function () {
  "use strict";
  var DATA = JSON.parse(document.getElementById("fp-data").textContent);
  // colours come with the data (flowpivot/report/page.py), the same the legend shows
  var COLORS = DATA.colors;
  function seedColor(status) {
    return status === "active" ? COLORS.seed : status === "dark" ? COLORS.dark : status === "unanswered" ? COLORS.unanswered : COLORS.unseen;
  }
  // a seed the flows never showed: collapsed by default in the graph and the timeline
  function neverSeen(s) { return s.status !== "active" && s.status !== "dark" && s.status !== "unanswered"; }
  // a small seeded generator: layouts draw from it, so the same report always lays out the same way
  function seededRandom(seed) {
    var a = seed >>> 0;
    return function () {
      a = (a + 0x6D2B79F5) >>> 0;
      var t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }
  function withSeed(seed, fn) {
    var saved = Math.random;
    Math.random = seededRandom(seed);
    try { return fn(); } finally { Math.random = saved; }
  }

  // ---- the sticky navigation bar must not cover the heading a link jumps to ----
  var nav = document.querySelector("nav");
  function navHeight() { document.documentElement.style.setProperty("--nav-h", (nav.offsetHeight + 8) + "px"); }
  navHeight();
  window.addEventListener("resize", navHeight);

  function el(tag, attrs) {
    var e = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        if (k === "text") e.textContent = attrs[k];
        else if (k === "cls") e.className = attrs[k];
        else e.setAttribute(k, attrs[k]);
      });
    }
    for (var i = 2; i < arguments.length; i++) {
      var c = arguments[i];
      if (c === null || c === undefined) continue;
      e.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    }
    return e;
  }
  function short(s, n) { return s.length > n ? s.slice(0, n - 1) + "…" : s; }
  function defang(ip) { return ip.replace(/\./g, "[.]").replace(/:/g, "[:]"); }
  function fmtTime(iso) { return iso ? iso.replace("T", " ").replace(/:\d\d(\.\d+)?(Z|\+00:00)$/, " UTC") : "–"; }
  function num(n) { return n === null || n === undefined ? "–" : Number(n).toLocaleString("en"); }

  // ---- copy buttons (clipboard API, with the old execCommand path for file:// pages that lack it) ----
  function copyText(text) {
    function fallback() {
      var ta = el("textarea", { style: "position:fixed;left:-9999px;top:0", "aria-hidden": "true" });
      ta.value = text;
      document.body.appendChild(ta);
      ta.select();
      var ok = false;
      try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
      document.body.removeChild(ta);
      return Promise.resolve(ok);
    }
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text).then(function () { return true; }, fallback);
    }
    return fallback();
  }
  function copyButton(text, label) {
    var b = el("button", { type: "button", cls: "copy", "data-copy": text, title: "Copy " + text, text: label || "copy" });
    return b;
  }
  document.addEventListener("click", function (ev) {
    var b = ev.target.closest ? ev.target.closest("button.copy") : null;
    if (!b) return;
    ev.stopPropagation();
    var text = b.getAttribute("data-copy");
    if (b.hasAttribute("data-copy-table")) {
      var t = document.getElementById(b.getAttribute("data-copy-table"));
      text = Array.prototype.map.call(t.querySelectorAll("tbody tr"), function (r) {
        var c = r.querySelector("[data-ip]");
        return c ? c.getAttribute("data-ip") : "";
      }).filter(Boolean).join("\n");
    }
    copyText(text).then(function () {
      b.classList.add("done");
      var old = b.textContent;
      b.textContent = "copied";
      b.setAttribute("data-copied", text);
      setTimeout(function () { b.textContent = old; b.classList.remove("done"); }, 1500);
    });
  });

  // ---- sortable tables: each cell carries data-v (number or text) ----
  function sortTable(th) {
    var table = th.closest("table");
    var idx = Array.prototype.indexOf.call(th.parentNode.children, th);
    var dir = th.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending";
    Array.prototype.forEach.call(th.parentNode.children, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", dir);
    var numeric = th.classList.contains("num");
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[idx].getAttribute("data-v"), y = b.cells[idx].getAttribute("data-v");
      if (x === null) x = a.cells[idx].textContent;
      if (y === null) y = b.cells[idx].textContent;
      var r;
      if (numeric) {
        var fx = parseFloat(x), fy = parseFloat(y);
        fx = isNaN(fx) ? -Infinity : fx; fy = isNaN(fy) ? -Infinity : fy;
        r = fx - fy;
      } else { r = x.localeCompare(y, "en", { numeric: true }); }
      return dir === "ascending" ? r : -r;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable th"), function (th) {
    var b = el("button", { type: "button", cls: "sort", text: th.textContent });
    th.textContent = "";
    th.appendChild(b);
    b.addEventListener("click", function () { sortTable(th); });
  });

  // ---- details panel ----
  var details = document.getElementById("details");
  function dl(pairs) {
    var d = el("dl");
    pairs.forEach(function (p) {
      if (p[1] === null || p[1] === undefined || p[1] === "") return;
      d.appendChild(el("dt", { text: p[0] }));
      d.appendChild(el("dd", null, typeof p[1] === "string" ? p[1] : p[1]));
    });
    return d;
  }
  function ipList(ips) {
    var wrap = el("div");
    ips.forEach(function (ip) {
      wrap.appendChild(el("div", null, el("span", { cls: "ip", text: defang(ip) }), copyButton(defang(ip))));
    });
    return wrap;
  }
  var byCluster = {}, byIp = {};
  DATA.clusters.forEach(function (c) { byCluster[c.id] = c; });
  function role(ip, r, obj) { (byIp[ip] = byIp[ip] || { ip: ip, roles: [] }).roles.push([r, obj]); }
  DATA.seeds.forEach(function (s) { role(s.ip, "seed", s); });
  DATA.clusters.forEach(function (c) { c.members.forEach(function (m) { role(m, "member", c); }); });
  DATA.expansion.forEach(function (e) { role(e.ip, "new host", e); });
  DATA.victims.forEach(function (v) { role(v.ip, "victim", v); });

  function showCluster(id) {
    var c = byCluster[id];
    if (!c) return;
    details.textContent = "";
    details.setAttribute("data-kind", "cluster");
    details.setAttribute("data-id", c.id);
    details.appendChild(el("h3", { text: "Cluster " + c.id + ": " + c.label }));
    details.appendChild(dl([
      ["Provider", c.provider], ["ASN", c.asn === null ? "unknown" : "AS" + c.asn], ["AS name", c.as_name || "–"],
      ["Country", c.country || "–"],
      ["Established", c.established ? "yes (TCP handshake seen)" : "no"], ["Initiator", c.initiator || "–"],
      ["Seen", fmtTime(c.first_seen) + " to " + fmtTime(c.last_seen)], ["Flows", num(c.flows)],
      ["Packets (est.)", num(c.packets_est)], ["Bytes (est.)", num(c.bytes_est)],
      ["Services", c.services.map(function (s) { return s.proto + "/" + (s.port === null ? "*" : s.port) + " (" + num(s.flows) + ")"; }).join(", ")],
      ["Score", c.score === null ? "–" : String(c.score)], ["Abuse contact", c.abuse || "unknown"]
    ]));
    details.appendChild(el("h4", { text: "Members (" + c.members.length + ")" }));
    details.appendChild(ipList(c.members));
    details.appendChild(el("h4", { text: "Seeds (" + c.seeds.length + ")" }));
    details.appendChild(ipList(c.seeds));
    if (c.facts.length) {
      details.appendChild(el("h4", { text: "Evidence" }));
      details.appendChild(dl(c.facts));
    }
    selectRow(c.id);
  }
  function showIp(ip) {
    var h = byIp[ip];
    if (!h) return;
    details.textContent = "";
    details.setAttribute("data-kind", "ip");
    details.setAttribute("data-id", ip);
    details.appendChild(el("h3", null, el("span", { cls: "ip", text: defang(ip) }), copyButton(defang(ip))));
    h.roles.forEach(function (r) {
      var o = r[1], pairs = [["Role", r[0]]];
      if (r[0] === "seed") {
        pairs.push(["Status", o.status + (o.state ? ": " + o.state : "")], ["Provider", o.provider],
          ["Seen", fmtTime(o.first_seen) + " to " + fmtTime(o.last_seen)],
          ["Seed sets", (o.sets || []).join(", ") || "–"],
          ["Clusters", (o.clusters || []).join(", ") || "none"], ["Comment", o.comment || ""]);
      } else if (r[0] === "member") {
        pairs.push(["Cluster", o.id + ": " + o.label]);
      } else if (r[0] === "new host") {
        pairs.push(["Provider", o.provider], ["Contacted by", o.contacted_by.map(defang).join(", ")],
          ["Clusters", o.clusters.join(", ")], ["Seen", fmtTime(o.first_seen) + " to " + fmtTime(o.last_seen)],
          ["Score", o.score === null ? "–" : String(o.score)],
          ["Confidence", o.confidence === null || o.confidence === undefined ? "–" : String(o.confidence)]);
      } else if (r[0] === "victim") {
        pairs.push(["Network", o.provider], ["Seeds", o.seeds.map(defang).join(", ")], ["Port", String(o.port)],
          ["State", o.state || "–"],
          ["Connections", o.connections === null || o.connections === undefined ? "–" : String(o.connections)],
          ["Interval", o.interval_s === null ? "–" : o.interval_s + " s"]);
      }
      details.appendChild(dl(pairs));
    });
  }
  function selectRow(id) {
    Array.prototype.forEach.call(document.querySelectorAll("#clusters-table tbody tr"), function (r) {
      r.classList.toggle("selected", r.getAttribute("data-cluster") === id);
    });
  }

  // ---- graph ----
  var tooltip = document.getElementById("tooltip");
  var elements = [], seen = {};
  function node(id, data) { if (!seen[id]) { seen[id] = true; data.id = id; elements.push({ group: "nodes", data: data }); } }
  function edge(a, b, cls) { var id = "e:" + a + ">" + b; if (!seen[id]) { seen[id] = true; elements.push({ group: "edges", data: { id: id, source: a, target: b, kind: cls } }); } }
  DATA.clusters.forEach(function (c, i) {
    node("cluster:" + c.id, { kind: "cluster", label: short(c.id + " · " + c.provider + (c.asn !== null ? " AS" + c.asn : ""), 48), ref: c.id,
      color: c.color, size: 46 + Math.min(30, c.members.length * 4),
      tip: c.label + ": " + c.members.length + " hosts, " + c.seeds.length + " seeds" });
    c.members.forEach(function (m) {
      node("ip:" + m, { kind: "member", label: defang(m), ref: m, color: COLORS.member, size: 22, tip: defang(m) + " (member of " + c.id + ")" });
      edge("cluster:" + c.id, "ip:" + m, "membership");
    });
  });
  DATA.seeds.forEach(function (s) {
    node("ip:" + s.ip, { kind: "seed", label: defang(s.ip), ref: s.ip, color: seedColor(s.status), unseen: neverSeen(s) && s.clusters.length === 0 ? 1 : 0,
      size: 18, tip: defang(s.ip) + " seed, " + s.status + (s.clusters.length > 1 ? ", shared by " + s.clusters.join(" + ") : "") });
  });
  DATA.clusters.forEach(function (c) { c.seeds.forEach(function (s) { edge("cluster:" + c.id, "ip:" + s, "contact"); }); });
  DATA.expansion.forEach(function (e) {
    node("ip:" + e.ip, { kind: "expansion", label: defang(e.ip), ref: e.ip, color: COLORS.expansion, size: 24, tip: defang(e.ip) + " new host (" + e.provider + ")" });
    e.contacted_by.forEach(function (m) { if (seen["ip:" + m]) edge("ip:" + m, "ip:" + e.ip, "expansion"); });
  });
  DATA.victims.forEach(function (v) {
    node("ip:" + v.ip, { kind: "victim", label: defang(v.ip), ref: v.ip, color: COLORS.victim, size: 16, tip: defang(v.ip) + " likely victim" });
    v.seeds.forEach(function (s) { if (seen["ip:" + s]) edge("ip:" + v.ip, "ip:" + s, "beacon"); });
  });

  var cy = cytoscape({
    container: document.getElementById("cy"),
    elements: elements,
    minZoom: 0.02, maxZoom: 4,
    style: [
      { selector: "node", style: { "background-color": "data(color)", width: "data(size)", height: "data(size)", label: "data(label)",
        "font-size": 9, color: "#333", "text-valign": "bottom", "text-margin-y": 3, "min-zoomed-font-size": 7 } },
      { selector: "node[kind = 'cluster']", style: { shape: "round-rectangle", "font-size": 12, "font-weight": "bold", color: "#222",
        "text-valign": "center", "text-halign": "center", "text-outline-color": "#fff", "text-outline-width": 2 } },
      { selector: "node[kind = 'seed']", style: { shape: "diamond" } },
      { selector: "node[kind = 'expansion']", style: { shape: "star" } },
      { selector: "node[kind = 'victim']", style: { shape: "triangle" } },
      { selector: "edge", style: { width: 1.2, "line-color": "#b8c2cc", "curve-style": "haystack", opacity: 0.8 } },
      { selector: "edge[kind = 'membership']", style: { width: 2.5, "line-color": "#c9a6dd" } },
      { selector: "edge[kind = 'expansion']", style: { "line-color": "#e08e0b", "line-style": "dashed", "curve-style": "bezier",
        "target-arrow-shape": "triangle", "target-arrow-color": "#e08e0b" } },
      { selector: "edge[kind = 'beacon']", style: { "line-color": "#1f8a70", "line-style": "dotted", "curve-style": "bezier" } },
      { selector: ":selected", style: { "border-width": 4, "border-color": "#0b5cad" } },
      { selector: ".faded", style: { opacity: 0.15 } }
    ],
    layout: { name: "preset", fit: false }  // laid out below, once the collapsed elements are out
  });
  // Never-seen seeds (that no cluster rests on) and likely victims start collapsed: taken out of the
  // graph with their edges and put back by their toggles (taken out, not display:none: Cytoscape's edge
  // geometry breaks on hidden edges).
  var collapsed = {
    unseen: cy.nodes("[unseen = 1]"),
    victims: cy.nodes("[kind = 'victim']")
  };
  collapsed.unseen = collapsed.unseen.union(collapsed.unseen.connectedEdges());
  collapsed.victims = collapsed.victims.union(collapsed.victims.connectedEdges());
  function hiddenNodes() {
    return Object.keys(collapsed).reduce(function (n, k) { return n + (collapsed[k].removed() ? collapsed[k].nodes().length : 0); }, 0);
  }
  // cose (force-directed) reads best; past a few thousand elements it is slow, so big hunts get concentric
  // rings. What is shown is laid out from a fixed seed: two loads give the same picture.
  var layoutRuns = 0;
  function layout(seed) {
    var opts = cy.elements().length > 3000 ? { name: "concentric", animate: false, minNodeSpacing: 4,
      concentric: function (n) { return { cluster: 4, member: 3, expansion: 2, seed: 1 }[n.data("kind")] || 0; } } :
      { name: "cose", animate: false, nodeRepulsion: function () { return 9000; }, idealEdgeLength: function () { return 70; },
        padding: 20, randomize: true, componentSpacing: 60 };
    withSeed(seed, function () { cy.layout(opts).run(); });
    cy.fit(undefined, 20);
    layoutRuns++;
  }
  var note = document.getElementById("graph-note");
  function graphNote() {
    var shown = cy.nodes().length, hidden = hiddenNodes();
    note.textContent = hidden ? "Showing " + num(shown) + " of " + num(shown + hidden) + " nodes; " + num(hidden) + " collapsed (see the toggles)." :
      "Showing all " + num(shown) + " nodes.";
  }
  function toggle(id, key) {
    var box = document.getElementById(id);
    var set = collapsed[key];
    if (box && box.checked) return;  // (a browser that kept the box ticked keeps the set shown)
    set.remove();
    if (!box) return;
    box.addEventListener("change", function () {
      if (box.checked && set.removed()) {
        // its edges go back only where both ends are in the graph
        set.nodes().restore();
        set.edges().filter(function (e) {
          return cy.getElementById(e.data("source")).nonempty() && cy.getElementById(e.data("target")).nonempty();
        }).restore();
      } else if (!box.checked) {
        set.remove();
      }
      layout(1);
      graphNote();
    });
  }
  toggle("show-unseen", "unseen");
  toggle("show-victims", "victims");
  layout(1);
  graphNote();
  window.fpCy = cy;
  cy.on("tap", "node", function (ev) {
    var d = ev.target.data();
    cy.elements().removeClass("faded");
    var hood = ev.target.closedNeighborhood();
    if (d.kind === "cluster") hood = hood.union(hood.nodes("[kind = 'member']").closedNeighborhood());
    cy.elements().not(hood).addClass("faded");
    if (d.kind === "cluster") showCluster(d.ref); else showIp(d.ref);
  });
  cy.on("tap", function (ev) { if (ev.target === cy) cy.elements().removeClass("faded"); });
  cy.on("mouseover", "node", function (ev) {
    tooltip.textContent = ev.target.data("tip");
    tooltip.style.display = "block";
  });
  cy.on("mousemove", function (ev) {
    var oe = ev.originalEvent;
    if (oe) { tooltip.style.left = (oe.clientX + 14) + "px"; tooltip.style.top = (oe.clientY + 10) + "px"; }
  });
  cy.on("mouseout", "node", function () { tooltip.style.display = "none"; });
  document.getElementById("fit").addEventListener("click", function () {
    cy.fit(undefined, 20);
  });
  document.getElementById("relayout").addEventListener("click", function () {
    layout(1 + layoutRuns);
  });
  document.getElementById("png").addEventListener("click", function () {
    var a = el("a", { href: cy.png({ full: true, scale: 2, bg: "#ffffff" }), download: "flowpivot-graph.png" });
    document.body.appendChild(a); a.click(); document.body.removeChild(a);
  });
  Array.prototype.forEach.call(document.querySelectorAll("#clusters-table tbody tr"), function (r) {
    r.addEventListener("click", function () {
      var id = r.getAttribute("data-cluster");
      cy.elements().unselect();
      var n = cy.getElementById("cluster:" + id);
      n.select();
      cy.elements().removeClass("faded");
      showCluster(id);
      document.getElementById("graph").scrollIntoView({ block: "start" });
    });
  });

  // ---- timelines ----
  var DAY = 86400000;
  function ms(iso) { return iso ? Date.parse(iso) : null; }
  function dayLabel(v) { return new Date(v).toISOString().slice(0, 10); }
  var wStart = ms(DATA.window.start), wEnd = ms(DATA.window.end);
  var allT = [];
  DATA.clusters.forEach(function (c) { allT.push(ms(c.first_seen), ms(c.last_seen)); });
  DATA.seeds.forEach(function (s) { allT.push(ms(s.first_seen), ms(s.last_seen)); });
  allT = allT.filter(function (x) { return x !== null && !isNaN(x); });
  var xMin = wStart !== null && !isNaN(wStart) ? wStart : Math.min.apply(null, allT);
  var xMax = wEnd !== null && !isNaN(wEnd) ? wEnd : Math.max.apply(null, allT);
  var timeAxis = { type: "linear", min: xMin, max: xMax, ticks: { callback: function (v) { return dayLabel(v); }, maxRotation: 0, autoSkipPadding: 20 } };
  Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
  Chart.defaults.animation = false;

  var darkMarks = {
    id: "darkMarks",
    afterDatasetsDraw: function (chart) {
      var opts = chart.options.plugins.darkMarks;
      if (!opts || !opts.points) return;
      var ctx = chart.ctx, xs = chart.scales.x, ys = chart.scales.y;
      ctx.save();
      ctx.strokeStyle = "#c0392b"; ctx.fillStyle = "#c0392b"; ctx.lineWidth = 2; ctx.font = "10px sans-serif";
      opts.points.forEach(function (p) {
        var x = xs.getPixelForValue(p.x), y = ys.getPixelForValue(p.y);
        ctx.beginPath(); ctx.moveTo(x + 3, y - 6); ctx.lineTo(x + 3, y + 6); ctx.stroke();
        ctx.fillText("dark", x + 6, y + 3);
      });
      ctx.restore();
    }
  };

  var hasClusterDaily = DATA.clusters.some(function (c) { return c.daily.length > 0; });
  var clusterDatasets = DATA.clusters.map(function (c, i) {
    var color = c.color;
    if (hasClusterDaily) {
      return { label: c.id + " · " + c.provider, data: c.daily.map(function (d) { return { x: ms(d[0] + "T12:00:00Z"), y: d[1] }; }),
        borderColor: color, backgroundColor: color, pointRadius: 2, tension: 0.2 };
    }
    return { label: c.id + " · " + c.provider, data: [{ x: [ms(c.first_seen) || xMin, ms(c.last_seen) || xMax], y: c.id }], backgroundColor: color };
  });
  var clusterBox = document.getElementById("tl-clusters").parentNode;
  if (!DATA.clusters.length) {
    // no cluster: a sentence, not an empty chart
    clusterBox.textContent = "";
    clusterBox.style.height = "auto";
    clusterBox.appendChild(el("p", { cls: "muted", id: "tl-clusters-none", text: "No clusters to chart." }));
  } else new Chart(document.getElementById("tl-clusters"), hasClusterDaily ? {
    type: "line",
    data: { datasets: clusterDatasets },
    options: { responsive: true, maintainAspectRatio: false, parsing: true,
      scales: { x: timeAxis, y: { beginAtZero: true, title: { display: true, text: "flows per day" } } },
      plugins: { title: { display: true, text: "Activity per cluster (flows per day)" },
        tooltip: { callbacks: { title: function (items) { return dayLabel(items[0].parsed.x); } } } } }
  } : {
    type: "bar",
    data: { labels: DATA.clusters.map(function (c) { return c.id; }), datasets: [{ label: "active", data: DATA.clusters.map(function (c) {
      return [ms(c.first_seen) || xMin, ms(c.last_seen) || xMax]; }), backgroundColor: DATA.clusters.map(function (c) { return c.color; }) }] },
    options: { indexAxis: "y", responsive: true, maintainAspectRatio: false, scales: { x: timeAxis },
      plugins: { legend: { display: false }, title: { display: true, text: "Activity per cluster (first to last seen)" } } }
  });

  var hasSeedDaily = DATA.seeds.some(function (s) { return s.daily.length > 0; });
  var statusColor = function (s) { return seedColor(s.status); };
  var seedChart;
  function seedTimeline(showUnseen) {
    // never-seen seeds have empty rows: left out unless asked for
    var seeds = DATA.seeds.filter(function (s) { return showUnseen || !neverSeen(s); });
    var seedRows = seeds.map(function (s) { return defang(s.ip); });
    var darkPoints = seeds.filter(function (s) { return s.status === "dark" && s.last_seen; })
      .map(function (s) { return { x: ms(s.last_seen), y: defang(s.ip) }; });
    var seedBox = document.getElementById("tl-seeds").parentNode;
    seedBox.style.height = Math.max(220, 70 + 17 * seedRows.length) + "px";
    if (seedChart) seedChart.destroy();
    if (hasSeedDaily) {
      var maxFlows = 1;
      seeds.forEach(function (s) { s.daily.forEach(function (d) { maxFlows = Math.max(maxFlows, d[1]); }); });
      var groups = {};
      seeds.forEach(function (s) {
        var g = groups[s.status] = groups[s.status] || [];
        s.daily.forEach(function (d) { g.push({ x: ms(d[0] + "T12:00:00Z"), y: defang(s.ip), r: 2 + 5 * Math.sqrt(d[1] / maxFlows), flows: d[1] }); });
      });
      seedChart = new Chart(document.getElementById("tl-seeds"), {
        type: "bubble",
        data: { datasets: Object.keys(groups).map(function (st) {
          return { label: "seed " + st, data: groups[st], backgroundColor: statusColor({ status: st }) }; }) },
        options: { responsive: true, maintainAspectRatio: false,
          scales: { x: timeAxis, y: { type: "category", labels: seedRows, offset: true, ticks: { font: { family: "monospace", size: 10 }, autoSkip: false } } },
          plugins: { title: { display: true, text: "Seed activity per day (dot size: flows); a seed went dark where its row stops" },
            darkMarks: { points: darkPoints },
            tooltip: { callbacks: { label: function (it) { return it.raw.y + " " + dayLabel(it.raw.x) + ": " + num(it.raw.flows) + " flows"; } } } } },
        plugins: [darkMarks]
      });
    } else {
      seedChart = new Chart(document.getElementById("tl-seeds"), {
        type: "bar",
        data: { labels: seedRows, datasets: [{ label: "seen", data: seeds.map(function (s) {
          return s.first_seen ? [ms(s.first_seen), ms(s.last_seen) || ms(s.first_seen) + DAY / 24] : null; }),
          backgroundColor: seeds.map(statusColor), minBarLength: 4 }] },
        options: { indexAxis: "y", responsive: true, maintainAspectRatio: false,
          scales: { x: timeAxis, y: { ticks: { font: { family: "monospace", size: 10 }, autoSkip: false } } },
          plugins: { legend: { display: false }, title: { display: true, text: "Seeds: first to last seen; a seed went dark where its bar stops" },
            darkMarks: { points: darkPoints } } },
        plugins: [darkMarks]
      });
    }
    window.fpCharts = { seeds: seedChart };
  }
  var tlBox = document.getElementById("tl-show-unseen");
  seedTimeline(tlBox ? tlBox.checked : true);
  if (tlBox) tlBox.addEventListener("change", function () { seedTimeline(tlBox.checked); });
  document.body.setAttribute("data-ready", "1");
})();
