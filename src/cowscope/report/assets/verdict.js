/* cowscope HTML report: the model-vs-kernel comparison's verdict, as the comparator gave it
   (payload: META.verdict, per step/process/mapping "verdict" entries; report/verdict.py).
   The page has no judgement of its own: pages are marked where a difference names them. */
"use strict";
window.cowscopeVerdict = function (META, h) {
  const V = META.verdict;
  const D = V ? V.differences : [];
  const REASONS = V ? V.reasons : [];
  const MAGENTA = "#ff00ff";
  const api = { on: !!V, MAGENTA };
  const reason = (id) => (id >= 0 ? REASONS[id] : "");
  const what = (id) => reason(id).split(": ")[0];
  const plural = (n, one, many) => `${n} ${n === 1 ? one : many}`;
  const diffLine = (id) => {
    const d = D[id];
    if (d.why < 0) return "≠ " + d.text;
    return `~ ${d.text}  (excluded: ${what(d.why)})`;
  };
  api.diffLine = diffLine;

  // ------------------------------------------------------------ header and steps
  function verdictText() {
    if (!V) return "kernel series shown beside the model, not judged: no comparison verdict was given, nothing is marked";
    const word = V.counted ? "DIFFER" : "agree";
    return `model vs kernel: ${word} · ${plural(V.counted, "difference", "differences")}, ${V.excluded} excluded` +
      (V.events ? ` · ${V.events}` : "");
  }
  api.header = () => {
    const box = document.getElementById("verdict");
    if (!META.compare && !V) { box.hidden = true; return; }
    box.textContent = "";
    box.hidden = false;
    const line = h.el("div", { class: "verdict-line" + (V && V.counted + V.events_counted ? " differs" : "") }, verdictText());
    box.appendChild(line);
    if (V) {
      box.dataset.counted = V.counted;
      box.dataset.excluded = V.excluded;
      box.dataset.events = V.events_counted;
      const loose = D.map((d, i) => i).filter((i) => !D[i].shown);
      if (loose.length) {
        const nc = loose.filter((i) => D[i].why < 0).length;
        const det = list(loose, `not on a page, mapping or process: ${plural(nc, "difference", "differences")}, ${loose.length - nc} excluded`);
        det.open = nc > 0;
        box.appendChild(det);
      }
      for (const n of V.notes) box.appendChild(h.el("div", { class: "verdict-note" }, n));
      box.appendChild(h.el("div", { class: "hint" },
        "The marks below are the comparator's (the same comparison as run --on both and verify): a page is marked where it reports a difference; " +
        "what it does not compare is greyed, with its reason."));
    }
  };
  function list(ids, title) {
    const det = h.el("details", { class: "verdict-list" });
    det.appendChild(h.el("summary", null, title));
    const ul = h.el("ul");
    ids = [...ids].sort((a, b) => (D[a].why < 0 ? 0 : 1) - (D[b].why < 0 ? 0 : 1) || a - b); // counted first
    for (const i of ids.slice(0, 300)) {
      const li = h.el("li", { class: D[i].why < 0 ? "counted" : "excluded", "data-diff-id": i }, diffLine(i));
      if (D[i].why >= 0) li.title = reason(D[i].why);
      ul.appendChild(li);
    }
    if (ids.length > 300) ul.appendChild(h.el("li", null, `… and ${ids.length - 300} more`));
    det.appendChild(ul);
    return det;
  }
  const stepCount = (s) => (s.verdict ? s.verdict.counted + s.verdict.events : 0);
  api.markSteps = () => {
    if (!V) return;
    const ticks = document.getElementById("step-ticks");
    const n = META.steps.length;
    META.steps.forEach((s, i) => {
      const c = stepCount(s);
      const b = document.querySelector(`#step-list button[data-step="${i}"]`);
      if (b) {
        b.dataset.differences = c;
        b.classList.toggle("differs", c > 0);
        if (c) b.title += ` · ${plural(c, "difference", "differences")} (model vs kernel)`;
      }
      const t = h.el("span", { class: "tick" + (c ? " differs" : ""), "data-step": i, title: c ? `${c} ≠` : "agree" });
      t.style.left = n > 1 ? `calc(${(100 * i) / (n - 1)}% - 3px)` : "0";
      ticks.appendChild(t);
    });
  };
  api.stepPanel = (k) => {
    const box = document.getElementById("step-diffs");
    box.textContent = "";
    const s = META.steps[k];
    if (!V || !s.verdict) return;
    const sv = s.verdict;
    box.dataset.counted = sv.counted;
    box.dataset.excluded = sv.excluded;
    box.dataset.events = sv.events;
    const text = `this checkpoint: ${plural(sv.counted, "difference", "differences")}, ${sv.excluded} excluded` +
      (sv.events ? `; ${plural(sv.events, "event sequence differs", "event sequences differ")}` : "");
    if (!sv.ids.length) { box.appendChild(h.el("span", null, text)); return; }
    const det = list(sv.ids, text);
    if (sv.counted + sv.events) det.open = true;
    box.appendChild(det);
  };

  // ------------------------------------------------------------ mappings and pages
  api.mapping = (m) => {
    const v = m.verdict;
    if (!v) return null;
    const n = m.npages;
    const diff = new Uint8Array(n), excl = new Uint8Array(n), notcmp = new Uint8Array(n).fill(1);
    const region = new Array(n);
    let ncmp = 0;
    for (const [lo, hi, name] of v.compared) for (let i = lo; i < hi; i++) { if (notcmp[i]) ncmp++; notcmp[i] = 0; region[i] = name; }
    const byPage = new Map();
    for (const [j, id] of v.marks) {
      (D[id].why < 0 ? diff : excl)[j] = 1;
      if (!byPage.has(j)) byPage.set(j, []);
      byPage.get(j).push(id);
    }
    let ndiff = 0, nexcl = 0;
    for (let i = 0; i < n; i++) { ndiff += diff[i]; nexcl += excl[i] && !diff[i] ? 1 : 0; }
    const pageLines = (i) => {
      const out = [notcmp[i] ? `not compared: ${what(v.around)}` : `compared: region ${region[i]}`];
      for (const id of byPage.get(i) || []) out.push(diffLine(id));
      return out;
    };
    return { diff, excl, notcmp, ndiff, nexcl, ncmp, notes: v.notes, around: v.around, pageLines };
  };
  api.mappingInfo = (mv) => {
    const box = h.el("div", { class: "verdict-map" });
    const text = mv.ndiff ? `${plural(mv.ndiff, "page differs", "pages differ")} from the kernel (the comparison's)`
      : mv.ncmp ? `${mv.ncmp} pages compared: no difference` : "";
    const span = h.el("span", { class: "diff" + (mv.ndiff ? "" : " zero"), "data-diff": mv.ndiff, "data-excluded": mv.nexcl,
      "data-compared": mv.ncmp }, text + (mv.nexcl ? ` · ${mv.nexcl} with an excluded difference` : ""));
    box.appendChild(span);
    if (mv.ncmp < mv.notcmp.length) {
      const det = h.el("details", { class: "notcmp" });
      det.appendChild(h.el("summary", null, (mv.ncmp ? `${mv.notcmp.length - mv.ncmp} pages not compared: ` : "not compared: ") +
        what(mv.around)));
      det.appendChild(h.el("div", null, reason(mv.around)));
      box.appendChild(det);
    }
    for (const id of mv.notes) box.appendChild(h.el("div", { class: D[id].why < 0 ? "note counted" : "note excluded", "data-diff-id": id }, diffLine(id)));
    return box;
  };
  api.marks = (mv) => [
    { mask: mv.notcmp, colour: "rgba(250,250,250,0.78)", corner: "fill", all: true },
    { mask: mv.excl, colour: "#999", corner: "br" },
    { mask: mv.diff, colour: MAGENTA, corner: "br" },
  ];
  api.processInfo = (p) => {
    if (!p.verdict || !p.verdict.length) return null;
    const nc = p.verdict.filter((i) => D[i].why < 0).length;
    const reasons = [...new Set(p.verdict.filter((i) => D[i].why >= 0).map((i) => what(D[i].why)))];
    const det = list(p.verdict, `this process: ${plural(nc, "difference", "differences")}` +
      (p.verdict.length > nc ? `, ${p.verdict.length - nc} excluded (${reasons.join("; ")})` : ""));
    det.classList.add("verdict-proc");
    det.dataset.counted = nc;
    det.open = nc > 0;
    return det;
  };

  // ------------------------------------------------------------ figures
  api.treeHeader = (t, between) => {
    // the whole-process columns, labelled as what they are on each side (`between`: other columns)
    const tr = h.el("tr", { class: "sides" });
    tr.appendChild(h.el("th", { colspan: 2 }));
    tr.appendChild(h.el("th", { colspan: 3, title: V ? V.sides[0] : "" }, "model process, whole"));
    if (between) tr.appendChild(h.el("th", { colspan: between }));
    tr.appendChild(h.el("th", { colspan: 3, title: V ? V.sides[1] : "" }, V ? "kernel: agent process, whole" : "kernel process, whole"));
    t.appendChild(h.el("thead")).appendChild(tr);
  };
  api.treeCaption = () => {
    if (!V) return null;
    const c = h.el("div", { class: "hint whole" });
    c.appendChild(h.el("div", null, `Whole-process figures (status, smaps_rollup): ${V.sides[0]}; ${V.sides[1]}.`));
    c.appendChild(h.el("div", null, `Not compared: ${reason(V.whole_process)}`));
    return c;
  };
  api.comparedTable = (k) => {
    const box = document.getElementById("compared");
    box.textContent = "";
    const s = META.steps[k];
    if (!V || !s.verdict) { document.getElementById("compared-section").hidden = true; return; }
    document.getElementById("compared-section").hidden = false;
    const t = h.el("table", { id: "compared-table" });
    const hdr = ["process", "region", "pages", "resident", "", "Rss", "", "Pss", "", "Private", "", "Shared", "", "comparison"];
    const sub = ["", "", "", "model", "kernel", "model", "kernel", "model", "kernel", "model", "kernel", "model", "kernel", ""];
    const head = h.el("thead");
    for (const row of [hdr, sub]) {
      const tr = h.el("tr");
      row.forEach((x, i) => tr.appendChild(h.el("th", i < 2 ? { class: "l" } : null, x)));
      head.appendChild(tr);
    }
    t.appendChild(head);
    const body = h.el("tbody");
    const names = new Map(s.processes.map((p) => [p.pid, p.name]));
    for (const r of s.verdict.regions) {
      const ids = s.verdict.ids.filter((i) => D[i].pid === r.pid && D[i].region.split(" ").pop() === r.name);
      const nc = ids.filter((i) => D[i].why < 0 && !D[i].event).length;
      const ne = ids.filter((i) => D[i].why < 0 && D[i].event).length;
      const tr = h.el("tr", { class: "region-row" + (nc + ne ? " differs" : ""), "data-pid": r.pid, "data-region": r.name,
        "data-differences": nc, "data-event-differences": ne });
      tr.appendChild(h.el("td", { class: "l" }, `${names.get(r.pid) || ""} ${r.pid}`));
      tr.appendChild(h.el("td", { class: "l" }, r.name));
      tr.appendChild(h.el("td", null, String(r.npages)));
      const fig = (side, key) => (side[key] === undefined ? "-" : key === "resident" ? String(side[key]) : h.kb(side[key]));
      for (const key of ["resident", "Rss", "Pss", "Private", "Shared"]) {
        for (const side of [r.model, r.linux]) {
          const td = h.el("td", key !== "resident" && r.smaps_not_compared ? { class: "notcmp-fig", title: "not compared: " + r.smaps_not_compared } : null, fig(side, key));
          tr.appendChild(td);
        }
      }
      const nx = ids.length - nc - ne;
      tr.appendChild(h.el("td", { class: "l" }, (nc + ne ? [nc ? `≠ ${nc}` : "", ne ? `events ≠ ${ne}` : ""].filter(Boolean).join(" · ")
        : "agree") + (nx ? ` (${nx} excluded)` : "")));
      body.appendChild(tr);
    }
    t.appendChild(body);
    box.appendChild(t);
    box.appendChild(h.el("div", { class: "hint" }, "What the comparison looks at: per region the page states (and PFN identity, map counts), and the smaps " +
      "figures of the region's VMAs (greyed where they are not compared, with the reason on hover)."));
  };

  api.legend = (lg) => {
    if (!META.compare && !V) return;
    const item = (bg, text) => {
      const it = h.el("span", { class: "legend-item" });
      const sw = h.el("span", { class: "swatch" });
      sw.style.background = bg;
      it.appendChild(sw);
      it.appendChild(document.createTextNode(text));
      lg.appendChild(it);
    };
    item(`linear-gradient(135deg, #fff 55%, ${MAGENTA} 55%)`, "model and kernel differ (the comparison)");
    item("linear-gradient(135deg, #fff 55%, #999 55%)", "excluded difference");
    item("linear-gradient(rgba(250,250,250,0.78), rgba(250,250,250,0.78)), #d62728", "not compared (greyed)");
  };
  return api;
};
