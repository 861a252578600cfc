// Search and the detail panel for a plotly map (one trace per dataset; ROWS.traces maps points to rows).
(function start() {
  "use strict";
  const gd = document.getElementById("map");
  if (!window.Plotly || !gd || !gd.data || !gd.on) {
    setTimeout(start, 50); // plotly.js is still setting the figure up
    return;
  }
  const ROWS = JSON.parse(document.getElementById("map-rows").textContent);
  const panel = document.getElementById("detail");
  const body = document.getElementById("detail-body");
  const countEl = document.getElementById("search-count");
  const input = document.getElementById("search");
  const lower = ROWS.text.map((t, i) => (ROWS.id[i] + "\n" + t).toLowerCase());
  const traces = ROWS.traces; // traces[t][i]: the row number of point i of trace t
  const is3d = gd.data.length > 0 && gd.data[0].type === "scatter3d";
  const baseSize = gd.data.map((t) => t.marker.size);
  const MAX_LISTED = 200;

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function mark(row) {
    if (is3d) return;
    Plotly.relayout(gd, { annotations: [{ x: ROWS.x[row], y: ROWS.y[row], text: ROWS.id[row],
      showarrow: true, arrowhead: 2, ax: 30, ay: -30, bgcolor: "rgba(255,255,255,0.85)" }] });
  }

  // The plot shares the width with the panel: it is resized whenever the panel opens or closes.
  function openPanel() {
    if (panel.hidden) {
      panel.hidden = false;
      Plotly.Plots.resize(gd);
    }
  }

  function show(row) {
    body.replaceChildren();
    body.append(el("div", "row-id", ROWS.id[row]));
    const meta = [ROWS.dataset[row], ROWS.split[row], ROWS.run_id[row] && "run " + ROWS.run_id[row]];
    body.append(el("div", "row-meta", meta.filter(Boolean).join(" · ")));
    let text = ROWS.text[row];
    if (ROWS.cut[row]) text += "\n… (" + ROWS.cut[row] + " more characters in the coordinates file)";
    else if (!ROWS.full_text) text += "\n(preview only: the coordinates file holds no full text)";
    body.append(el("div", "row-text", text));
    openPanel();
    panel.dataset.row = String(row);
    mark(row);
  }

  function listMatches(rows, total) {
    body.replaceChildren();
    body.append(el("div", "row-meta", total + " match" + (total === 1 ? "" : "es") +
      (total > rows.length ? " (first " + rows.length + " listed)" : "")));
    for (const r of rows) {
      const item = el("div", "match");
      item.append(el("span", "row-id", ROWS.id[r] + " "), el("span", "muted", ROWS.text[r].slice(0, 140)));
      item.addEventListener("click", () => show(r));
      body.append(item);
    }
    openPanel();
    delete panel.dataset.row;
  }

  function search(query) {
    const q = query.trim().toLowerCase();
    if (!q) {
      countEl.textContent = "";
      if (is3d) Plotly.restyle(gd, { "marker.size": baseSize });
      else Plotly.restyle(gd, { selectedpoints: gd.data.map(() => null) });
      return;
    }
    const selected = [], listed = [];
    let total = 0;
    for (let t = 0; t < traces.length; t++) {
      const cd = traces[t], hit = [];
      for (let i = 0; i < cd.length; i++) {
        if (lower[cd[i]].includes(q)) {
          hit.push(i);
          total++;
          if (listed.length < MAX_LISTED) listed.push(cd[i]);
        }
      }
      selected.push(hit);
    }
    if (is3d) {
      const sizes = traces.map((rows, t) => {
        const s = new Array(rows.length).fill(baseSize[t] * 0.4);
        for (const i of selected[t]) s[i] = baseSize[t] * 2;
        return s;
      });
      Plotly.restyle(gd, { "marker.size": sizes });
    } else {
      Plotly.restyle(gd, { selectedpoints: selected });
    }
    countEl.textContent = total + " match" + (total === 1 ? "" : "es");
    listMatches(listed, total);
  }

  let timer = null;
  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => search(input.value), 150);
  });
  gd.on("plotly_click", (ev) => {
    if (ev && ev.points && ev.points.length) show(traces[ev.points[0].curveNumber][ev.points[0].pointNumber]);
  });
  document.getElementById("detail-close").addEventListener("click", () => {
    panel.hidden = true;
    Plotly.relayout(gd, { annotations: [] });
    Plotly.Plots.resize(gd);
  });

  // #id=ROW-ID opens a row, #q=WORDS runs a search: links to a point, and a way in for scripts.
  function fromHash() {
    const params = new URLSearchParams(location.hash.slice(1));
    if (params.has("q")) {
      input.value = params.get("q");
      search(input.value);
    }
    if (params.has("id")) {
      const row = ROWS.id.indexOf(params.get("id"));
      if (row >= 0) show(row);
    }
  }
  window.addEventListener("hashchange", fromHash);
  fromHash();
  window.chatspaceMap = { rows: ROWS, show: show, search: search };
  document.body.dataset.mapReady = "1";
})();
