/* cowscope HTML report: decodes the deflated page arrays and draws page maps, tree, timeline, events. */
"use strict";
(function () {
  const META = JSON.parse(document.getElementById("meta").textContent);
  const R = (window.cowscopeReport = { ready: false, errors: [], meta: META, openMs: null });
  window.addEventListener("error", (e) => R.errors.push(String(e.message || e)));
  window.addEventListener("unhandledrejection", (e) => R.errors.push(String(e.reason)));

  const PAGE = META.page_size;
  const MAXCELLS = 8192;
  const NCODES = META.legend.length;
  const NAMES = META.legend.map((l) => l.name);
  const COLOURS = META.legend.map((l) => l.colour);
  // the source's own page classes (the inspector's: against the parent), when it gave them
  const CLASSES = META.class_legend || [];
  const CL_COLOURS = CLASSES.map((l) => l.colour);
  const CL_NAMES = CLASSES.map((l) => l.name);
  const HAS_CLASSES = CLASSES.length > 0;
  const CLASS_FIGS = [["shared_with_parent_kb", "shared w/ parent"], ["sibling_shared_kb", "shared in tree"],
    ["copied_kb", "copied"], ["copied_identical_kb", "copied, same bytes"], ["new_kb", "new"],
    ["released_kb", "released"]];
  let BUF = null;
  let cur = 0;
  const views = new Map(); // "pid:start" -> {lo, hi}
  const colCache = new Map();

  // ---------------------------------------------------------------- decoding
  function b64bytes(id) {
    const text = document.getElementById(id).textContent.trim();
    if (Uint8Array.fromBase64) return Uint8Array.fromBase64(text);
    const bin = atob(text);
    const n = bin.length;
    const u = new Uint8Array(n);
    for (let i = 0; i < n; i++) u[i] = bin.charCodeAt(i);
    return u;
  }
  async function inflate(u8) {
    const ds = new DecompressionStream("deflate");
    return await new Response(new Blob([u8]).stream().pipeThrough(ds)).arrayBuffer();
  }
  function col(desc) {
    if (!desc) return null;
    if (!Array.isArray(desc)) return patched(desc);
    const key = desc[0] + ":" + desc[2] + ":" + desc[3];
    if (colCache.has(key)) return colCache.get(key);
    const [off, n, dt, delta] = desc;
    let a;
    if (dt === "u1") a = new Uint8Array(BUF, off, n);
    else if (dt === "i4") a = new Int32Array(BUF, off, n);
    else a = new Float64Array(BUF, off, n);
    if (delta) {
      const out = new Float64Array(n);
      let acc = 0;
      for (let i = 0; i < n; i++) { acc += a[i]; out[i] = acc; }
      a = out;
    }
    colCache.set(key, a);
    return a;
  }
  const patchCache = new WeakMap();
  function patched(desc) {
    // {ref, n, pos, val}: the reference array with the values at `pos` replaced
    if (patchCache.has(desc)) return patchCache.get(desc);
    const base = col(desc.ref);
    const out = base instanceof Uint8Array ? new Uint8Array(base) : Float64Array.from(base);
    const pos = col(desc.pos);
    const val = col(desc.val);
    for (let i = 0; i < pos.length; i++) out[pos[i]] = val[i];
    patchCache.set(desc, out);
    return out;
  }
  function pages(p) {
    if (!p) return null;
    return { code: col(p.code), mc: col(p.mc), pfn: col(p.pfn) };
  }

  // ---------------------------------------------------------------- helpers
  const hex = (v) => (v < 0 ? "-" : "0x" + v.toString(16));
  function kb(v) {
    if (v === null || v === undefined) return "-";
    if (v >= 10240) return (v / 1024).toFixed(1) + " MiB";
    return v + " kB";
  }
  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    if (attrs) for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function codeCounts(code, lo, hi) {
    const c = new Array(NCODES).fill(0);
    for (let i = lo; i < hi; i++) c[code[i]]++;
    return c;
  }
  function countsText(c) {
    const parts = [];
    for (let k = 0; k < NCODES; k++) if (c[k]) parts.push(NAMES[k] + " " + c[k]);
    return parts.join(" · ");
  }
  function findPrev(step, pid, m) {
    if (step <= 0) return null;
    const prev = META.steps[step - 1].processes.find((p) => p.pid === pid);
    if (!prev) return null;
    let best = prev.mappings.find((x) => x.start === m.start && x.pages);
    if (!best) best = prev.mappings.find((x) => x.pages && x.start < m.end && x.end > m.start);
    return best || null;
  }
  function changedMask(step, pid, m, d) {
    const n = m.npages;
    const out = new Uint8Array(n);
    if (step === 0) return out;
    const pm = findPrev(step, pid, m);
    if (!pm) {
      for (let i = 0; i < n; i++) out[i] = d.code[i] !== 0 ? 1 : 0;
      return out;
    }
    const pd = pages(pm.pages);
    const shift = (m.start - pm.start) / PAGE;
    for (let i = 0; i < n; i++) {
      const j = i + shift;
      if (j < 0 || j >= pm.npages) { out[i] = d.code[i] !== 0 ? 1 : 0; continue; }
      out[i] = d.code[i] !== pd.code[j] || d.pfn[i] !== pd.pfn[j] || d.mc[i] !== pd.mc[j] ? 1 : 0;
    }
    return out;
  }
  // the model-vs-kernel comparison's verdict (verdict.js): the only source of difference marks
  const VD = window.cowscopeVerdict(META, { el, kb, hex });

  // ---------------------------------------------------------------- events
  // EV: the main series' events; KEV: the compare series' (the kernel's, run --on both), or null.
  // Each keeps its own pids and addresses; KEV's mpid/maddr place its events on the main series' pages.
  let EV = null;
  let KEV = null;
  function loadSet(e, side) {
    const copyKinds = new Set(e.copy_kinds);  // observe.events.COPYING_KINDS, from the report's data
    const S = { side, n: e.n, kinds: e.kinds, details: e.details, copy: e.kinds.map((k) => copyKinds.has(k)),
      seq: col(e.seq), pid: col(e.pid), kind: col(e.kind), addr: col(e.addr), old: col(e.old_pfn),
      new: col(e.new_pfn), detail: col(e.detail), step: col(e.step), mapping: col(e.mapping) };
    S.mpid = e.mpid ? col(e.mpid) : S.pid;
    S.maddr = e.maddr ? col(e.maddr) : S.addr;
    return S;
  }
  function loadEvents() {
    EV = loadSet(META.events, "model");
    if (META.cmp_events) KEV = loadSet(META.cmp_events, "kernel");
  }
  function lastEvent(S, step, pid, addr, pfn) {
    // The last event up to `step` on this page of this process, or another process copying away from its frame.
    const page = Math.floor(addr / PAGE) * PAGE;
    let best = -1;
    for (let j = 0; j < S.n; j++) {
      if (S.step[j] > step) continue;
      if (S.pid[j] === pid) {
        if (S.addr[j] >= page && S.addr[j] < page + PAGE) best = j;
      } else if (pfn > 0 && S.old[j] === pfn && S.copy[S.kind[j]]) best = j;
    }
    return best;
  }
  // side "kernel": the kernel's events, with the kernel's pid and address
  R.lastEventText = (step, pid, addr, pfn, side) => {
    const S = side === "kernel" ? KEV : EV;
    return S ? eventText(S, lastEvent(S, step, pid, addr, pfn)) : "none recorded";
  };
  // a frame: -1 none, -2 one the backend cannot know (the kernel never names a copy's old frame)
  const pfnText = (v) => (v === -2 ? "unknown" : hex(v));
  function eventText(S, i) {
    if (i < 0 || !S || i >= S.n) return "none recorded";
    const kind = S.kinds[S.kind[i]];
    const verb = { "cow-copy": "copied", "zero-cow": "zero page copied", "file-copy": "file page copied",
      "zero-fill": "zero-filled", "cow-reuse": "reused", "zero-page-map": "zero page mapped",
      "pagecache-map": "page cache mapped", "thp-copy": "2 MiB copied" }[kind] || kind;
    let s = `#${S.seq[i]} ${verb} by pid ${S.pid[i]}`;
    if (S.addr[i] >= 0) s += ` at ${hex(S.addr[i])}`;
    if (S.old[i] !== -1 || S.new[i] !== -1) s += `, PFN ${pfnText(S.old[i])} → ${pfnText(S.new[i])}`;
    const det = S.details[S.detail[i]];
    if (det) s += ` (${det})`;
    s += ` [${kind}, step ${S.step[i] + 1}]`;
    return s;
  }

  // ---------------------------------------------------------------- page maps
  function layout(span) {
    const per = Math.max(1, Math.ceil(span / MAXCELLS));
    const ncell = Math.ceil(span / per);
    const cols = Math.min(128, ncell);
    const rows = Math.ceil(ncell / cols);
    const cs = ncell <= 512 ? 10 : ncell <= 2048 ? 8 : 6;
    return { per, ncell, cols, rows, cs };
  }
  function drawMap(canvas, d, view, marks, colours) {
    colours = colours || COLOURS;
    const span = view.hi - view.lo;
    const L = layout(span);
    canvas.width = L.cols * L.cs;
    canvas.height = L.rows * L.cs;
    const ctx = canvas.getContext("2d");
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    const cnt = new Int32Array(Math.max(NCODES, colours.length));
    const inset = L.cs >= 8 ? 1 : 0;
    const outlined = [];
    for (let c = 0; c < L.ncell; c++) {
      const a = view.lo + c * L.per;
      const b = Math.min(view.hi, a + L.per);
      let code;
      const flags = new Array(marks.length).fill(0);
      if (L.per === 1) {
        code = d.code[a];
        for (let k = 0; k < marks.length; k++) flags[k] = marks[k].mask[a];
      } else {
        cnt.fill(0);
        for (let i = a; i < b; i++) {
          cnt[d.code[i]]++;
          for (let k = 0; k < marks.length; k++) if (marks[k].mask[i]) flags[k]++;
        }
        // a mark on "all" pages (not compared) covers a run only when all its pages have it
        for (let k = 0; k < marks.length; k++) flags[k] = marks[k].all ? flags[k] === b - a : flags[k] > 0;
        code = 0;
        for (let k = 1; k < colours.length; k++) if (cnt[k] > 0 && cnt[k] >= cnt[code]) code = k;
      }
      const x = (c % L.cols) * L.cs;
      const y = Math.floor(c / L.cols) * L.cs;
      ctx.fillStyle = colours[code];
      ctx.fillRect(x + inset, y + inset, L.cs - 2 * inset, L.cs - 2 * inset);
      for (let k = 0; k < marks.length; k++) if (flags[k]) outlined.push([x, y, k]);
    }
    // marks: changed pages get a dark top-left corner, the comparison's differences a magenta
    // bottom-right one (grey: excluded); pages not compared are washed out ("fill")
    const h = Math.max(3, Math.ceil(L.cs * 0.6));
    for (const [x, y, k] of outlined) {
      ctx.fillStyle = marks[k].colour;
      if (marks[k].corner === "fill") { ctx.fillRect(x, y, L.cs, L.cs); continue; }
      ctx.beginPath();
      if (marks[k].corner === "br") {
        ctx.moveTo(x + L.cs, y + L.cs - h); ctx.lineTo(x + L.cs, y + L.cs); ctx.lineTo(x + L.cs - h, y + L.cs);
      } else {
        ctx.moveTo(x, y); ctx.lineTo(x + h, y); ctx.lineTo(x, y + h);
      }
      ctx.closePath();
      ctx.fill();
    }
    return L;
  }
  function cellAt(canvas, L, view, ev) {
    const r = canvas.getBoundingClientRect();
    const cx = Math.floor((ev.clientX - r.left) * (canvas.width / r.width) / L.cs);
    const cy = Math.floor((ev.clientY - r.top) * (canvas.height / r.height) / L.cs);
    const c = cy * L.cols + cx;
    if (cx < 0 || cx >= L.cols || c < 0 || c >= L.ncell) return null;
    const a = view.lo + c * L.per;
    return { a, b: Math.min(view.hi, a + L.per) };
  }
  const tip = document.getElementById("tooltip");
  function showTip(ev, text) {
    tip.textContent = text;
    tip.hidden = false;
    tip.style.left = Math.min(ev.clientX + 14, window.innerWidth - 540) + "px";
    tip.style.top = ev.clientY + 14 + "px";
  }
  function hideTip() { tip.hidden = true; }

  function tipText(pid, m, d, cell, changed, mv, other, withEvents, cls, kev) {
    if (cell.b - cell.a === 1) {
      const i = cell.a;
      const addr = m.start + i * PAGE;
      const lines = [`${hex(addr)}  page ${i} of ${m.npages}`, `state: ${NAMES[d.code[i]]}`,
        ...(cls ? [`class: ${CL_NAMES[cls[i]]}`] : []),
        `PFN: ${d.pfn[i] > 0 ? hex(d.pfn[i]) : d.code[i] === 0 ? "-" : "hidden"}   map count: ${d.mc[i]}`];
      if (changed && changed[i]) lines.push("changed since the previous checkpoint");
      if (other && other.d) lines.push(`${other.name}: ${NAMES[other.d.code[i]] ?? "-"}`);
      if (mv) lines.push(...mv.pageLines(i));
      if (withEvents) lines.push("last change: " + eventText(EV, lastEvent(EV, cur, pid, addr, d.pfn[i])));
      if (kev) {  // the kernel's pane: its page's own address and the kernel's last event there
        const ka = kev.start + (i + kev.shift) * PAGE;
        lines.push(`kernel: pid ${kev.pid} at ${hex(ka)}`);
        if (KEV) lines.push("last change on the kernel: " + eventText(KEV, lastEvent(KEV, cur, kev.pid, ka, d.pfn[i])));
      }
      return lines.join("\n");
    }
    const c = codeCounts(d.code, cell.a, cell.b);
    let nch = 0, ndiff = 0, nnot = 0;
    for (let i = cell.a; i < cell.b; i++) {
      if (changed && changed[i]) nch++;
      if (mv && mv.diff[i]) ndiff++;
      if (mv && mv.notcmp[i]) nnot++;
    }
    const lines = [`${hex(m.start + cell.a * PAGE)}–${hex(m.start + cell.b * PAGE)}  pages ${cell.a}–${cell.b - 1}`,
      countsText(c)];
    if (nch) lines.push(`${nch} changed since the previous checkpoint`);
    if (ndiff) lines.push(`${ndiff} differ (the comparison's differences)`);
    if (nnot) lines.push(`${nnot} not compared`);
    lines.push("click to zoom in");
    return lines.join("\n");
  }

  function mappingBlock(step, p, m) {
    const box = el("div", { class: "mapping", "data-pid": p.pid, "data-start": m.start, "data-npages": m.npages });
    const head = el("div", { class: "head" }, `${hex(m.start)}-${hex(m.end)} ${m.perms} ${m.path || "[anon]"}`
      + `  (${m.npages} pages)`);
    box.appendChild(head);
    const figs = el("span", { class: "figs" },
      `Rss ${kb(m.rss)} · Pss ${kb(m.pss)} · Private ${kb(m.priv)} · Shared ${kb(m.shared)}`);
    box.appendChild(figs);
    if (!m.pages) {
      box.appendChild(el("div", { class: "nopages" }, "no page data for this mapping"));
      return box;
    }
    const d = pages(m.pages);
    const byClass = HAS_CLASSES && m.classes && document.getElementById("colour-by").value === "class";
    const shown = byClass ? { code: col(m.classes), mc: d.mc, pfn: d.pfn } : d;
    if (m.classes) {
      const cc = col(m.classes);
      const byCls = {};
      for (let i = 0; i < m.npages; i++) byCls[CL_NAMES[cc[i]]] = (byCls[CL_NAMES[cc[i]]] || 0) + 1;
      box.appendChild(el("span", { class: "class-counts", "data-classes": JSON.stringify(byCls) },
        Object.entries(byCls).filter(([k]) => k !== "not present").map(([k, v]) => `${k} ${v}`).join(" · ")));
    }
    const counts = codeCounts(d.code, 0, m.npages);
    const byName = {};
    counts.forEach((v, k) => { if (v) byName[NAMES[k]] = (byName[NAMES[k]] || 0) + v; });
    const cspan = el("span", { class: "counts", "data-counts": JSON.stringify(byName) }, countsText(counts));
    box.appendChild(cspan);
    const changed = changedMask(step, p.pid, m, d);
    let nch = 0;
    for (let i = 0; i < changed.length; i++) nch += changed[i];
    box.appendChild(el("span", { class: "changed", "data-changed": nch },
      step > 0 && nch ? `${nch} changed since step ${step}` : ""));
    const kd = m.cmp && m.cmp.pages ? pages(m.cmp.pages) : null;
    const mv = VD.mapping(m);
    if (META.compare && !kd) box.appendChild(el("span", { class: "nopages" }, "no kernel counterpart"));
    if (mv) {
      box.appendChild(VD.mappingInfo(mv));
      if (mv.ncmp === 0) box.classList.add("not-compared");
    }
    const key = p.pid + ":" + m.start;
    if (!views.has(key)) views.set(key, { lo: 0, hi: m.npages });
    const view = views.get(key);
    if (view.hi > m.npages) { view.lo = 0; view.hi = m.npages; }
    const zoom = el("div", { class: "zoom" });
    box.appendChild(zoom);
    const canv = el("div", { class: "canvases" });
    box.appendChild(canv);
    const panes = [];
    const srcName = META.steps[step].source;
    const mk = (label, data, marks, other, withEvents, kev) => {
      const fig = el("figure");
      const c = el("canvas", { class: "pagemap", "data-source": label });
      fig.appendChild(c);
      if (META.compare) fig.appendChild(el("figcaption", null, label));
      canv.appendChild(fig);
      panes.push({ c, data, marks, other, withEvents, kev, L: null, colours: data === shown && byClass ? CL_COLOURS : null });
    };
    const chMark = { mask: changed, colour: "#000" };
    const vMarks = mv ? VD.marks(mv) : [];
    const kname = META.steps[step].cmp ? META.steps[step].cmp.source : "kernel";
    mk(srcName, shown, [...vMarks.slice(0, 1), chMark, ...vMarks.slice(1)], { name: kname, d: kd }, true);
    if (kd) {
      const c = m.cmp;
      mk(`${kname}: pid ${c.pid} ${c.label}` +
        (c.shift ? ` (aligned, shift ${c.shift} pages)` : "") + (c.outside ? `, ${c.outside} pages outside it` : ""),
        kd, vMarks, { name: srcName, d }, false, c);
    }
    const redraw = () => {
      const L0 = layout(view.hi - view.lo);
      zoom.textContent = "";
      zoom.appendChild(document.createTextNode(
        `showing pages ${view.lo}–${view.hi - 1}` + (L0.per > 1 ? `, 1 cell = ${L0.per} pages ` : " ")));
      zoom.dataset.per = L0.per;
      zoom.dataset.cells = L0.ncell;
      if (view.lo > 0 || view.hi < m.npages) {
        const b = el("button", { class: "zoom-out" }, "show whole mapping");
        b.onclick = () => { view.lo = 0; view.hi = m.npages; redraw(); };
        zoom.appendChild(b);
      }
      for (const pane of panes) pane.L = drawMap(pane.c, pane.data, view, pane.marks, pane.colours);
    };
    for (const pane of panes) {
      pane.c.addEventListener("mousemove", (ev) => {
        const cell = cellAt(pane.c, pane.L, view, ev);
        if (!cell) return hideTip();
        showTip(ev, tipText(p.pid, m, pane.withEvents ? d : pane.data, cell, pane.withEvents ? changed : null, mv,
          pane.other, pane.withEvents, pane.withEvents && m.classes ? col(m.classes) : null, pane.kev));
      });
      pane.c.addEventListener("mouseleave", hideTip);
      pane.c.addEventListener("click", (ev) => {
        const cell = cellAt(pane.c, pane.L, view, ev);
        if (!cell || pane.L.per === 1) return;
        const span = Math.max(Math.min(MAXCELLS, m.npages), Math.ceil((view.hi - view.lo) / 8));
        const mid = Math.floor((cell.a + cell.b) / 2);
        view.lo = Math.max(0, Math.min(m.npages - span, mid - Math.floor(span / 2)));
        view.hi = view.lo + span;
        hideTip();
        redraw();
      });
    }
    redraw();
    return box;
  }

  function isEmpty(step, p, m) {
    // nothing resident now, and nothing was resident at the previous step either
    if (!m.pages) return false;
    if (m.verdict && (m.verdict.marks.length || m.verdict.notes.length)) return false;
    const resident = (c) => Object.keys(c || {}).some((k) => k !== "not present" && c[k] > 0);
    if (resident(m.counts) || (m.cmp && resident(m.cmp.counts))) return false;
    const pm = findPrev(step, p.pid, m);
    if (!pm) return true;
    return !resident(pm.counts);
  }
  function renderMaps() {
    const root = document.getElementById("pagemaps");
    root.textContent = "";
    const step = META.steps[cur];
    const only = document.getElementById("map-pid").value;
    for (const p of step.processes) {
      if (only !== "" && p.pid !== Number(only)) continue;
      const box = el("div", { class: "proc", "data-pid": p.pid });
      box.appendChild(el("h3", null, `pid ${p.pid} ${p.name} (ppid ${p.ppid})` +
        (p.cmp ? ` ↔ kernel pid ${p.cmp.pid}` : "")));
      const pv = VD.processInfo(p);
      if (pv) box.appendChild(pv);
      const showEmpty = document.getElementById("show-empty").checked;
      let hidden = 0;
      for (const m of p.mappings) {
        if (!showEmpty && isEmpty(cur, p, m)) { hidden++; continue; }
        box.appendChild(mappingBlock(cur, p, m));
      }
      if (hidden) box.appendChild(el("div", { class: "nopages", "data-hidden": hidden },
        `${hidden} mappings with no resident page and no change hidden`));
      root.appendChild(box);
    }
  }

  // ---------------------------------------------------------------- process tree
  function renderTree() {
    const step = META.steps[cur];
    const root = document.getElementById("tree");
    root.textContent = "";
    const t = el("table", { id: "tree-table" });
    const hdr = ["process", "pid", "RSS", "PSS", "USS"];
    const withClasses = step.processes.some((p) => p.classes);
    if (withClasses) hdr.push(...CLASS_FIGS.map(([, h]) => h));
    if (META.compare) {
      VD.treeHeader(t, withClasses ? CLASS_FIGS.length : 0);
      hdr.push("RSS", "PSS", "USS");
    }
    const thr = el("tr");
    hdr.forEach((h, i) => thr.appendChild(el("th", i === 0 ? { class: "l" } : null, h)));
    (t.tHead || t.appendChild(el("thead"))).appendChild(thr);
    const body = el("tbody");
    t.appendChild(body);
    const pids = new Set(step.processes.map((p) => p.pid));
    const kids = new Map();
    for (const p of step.processes) {
      const parent = pids.has(p.ppid) && p.ppid !== p.pid ? p.ppid : null;
      if (!kids.has(parent)) kids.set(parent, []);
      kids.get(parent).push(p);
    }
    const walk = (parent, depth) => {
      for (const p of (kids.get(parent) || []).sort((a, b) => a.pid - b.pid)) {
        const tr = el("tr", { class: "proc-row", "data-pid": p.pid, "data-rss": p.rss, "data-pss": p.pss,
          "data-uss": p.uss });
        tr.appendChild(el("td", { class: "l" }, (depth ? "  ".repeat(depth - 1) + "└─ " : "") + p.name));
        tr.appendChild(el("td", null, String(p.pid)));
        for (const v of [p.rss, p.pss, p.uss]) tr.appendChild(el("td", null, kb(v)));
        if (withClasses) for (const [k] of CLASS_FIGS) {
          const c = p.classes || {};
          // a root has no parent to be classed against: its "shared in tree" goes in that column
          const v = k === "sibling_shared_kb" && c[k] === undefined ? c.shared_in_tree_kb : c[k];
          tr.appendChild(el("td", { "data-class": k }, kb(v)));
        }
        if (META.compare) for (const v of p.cmp ? [p.cmp.rss, p.cmp.pss, p.cmp.uss] : [null, null, null])
          tr.appendChild(el("td", null, kb(v)));
        body.appendChild(tr);
        walk(p.pid, depth + 1);
      }
    };
    walk(null, 0);
    const tot = step.total;
    const ktot = step.cmp ? step.cmp.total : null;
    const rows = [["RSS sum (shared frames counted in every process)", "rss_sum_kb"],
      ["PSS sum", "pss_sum_kb"], [`real total: ${tot.method}`, "total_kb"]];
    for (const [label, k] of rows) {
      const tr = el("tr", { class: "total", "data-total": k, "data-kb": tot[k] });
      tr.appendChild(el("td", { class: "l" }, label));
      tr.appendChild(el("td"));
      tr.appendChild(el("td", null, kb(tot[k])));
      tr.appendChild(el("td"));
      tr.appendChild(el("td"));
      if (withClasses) for (let i = 0; i < CLASS_FIGS.length; i++) tr.appendChild(el("td"));
      if (META.compare) {
        tr.appendChild(el("td", null, ktot ? kb(ktot[k]) : "-"));
        tr.appendChild(el("td"));
        tr.appendChild(el("td"));
      }
      body.appendChild(tr);
    }
    root.appendChild(t);
    const cap = VD.treeCaption();
    if (cap) root.appendChild(cap);
  }

  // ---------------------------------------------------------------- timeline
  const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf"];
  function timelineData() {
    const short = (t) => (t.length > 28 ? t.slice(0, 27) + "…" : t);
    // the inspector samples over time: label its steps by seconds since the first sample
    const timed = META.steps.every((s) => s.source === "inspect");
    const t0 = META.steps[0].ts;
    let x = META.steps.map((s, i) => (timed ? `${(s.ts - t0).toFixed(1)} s` : short(numbered(i, s.label))));
    if (new Set(x).size < x.length) x = x.map((t, i) => `${i + 1}: ${t}`); // plotly merges equal categories
    const pids = [];
    const names = new Map();
    for (const s of META.steps) for (const p of s.processes) {
      if (!names.has(p.pid)) { pids.push(p.pid); names.set(p.pid, p.name); }
    }
    const traces = [];
    const classed = META.steps.some((s) => s.processes.some((p) => p.classes && p.classes.copied_kb != null));
    // with the inspector's classes: each worker's shared, copied and released memory; RSS/PSS/USS
    // stay a click away in the legend
    const series = [["rss", "solid", "RSS"], ["pss", "dash", "PSS"], ["uss", "dot", "USS"]];
    const classSeries = [["shared_with_parent_kb", "dot", "shared w/ parent"], ["copied_kb", "dash", "copied"],
      ["released_kb", "dashdot", "released"]];
    pids.forEach((pid, n) => {
      const colour = PALETTE[n % PALETTE.length];
      for (const [k, dash, label] of series) {
        const y = META.steps.map((s) => {
          const p = s.processes.find((q) => q.pid === pid);
          return p ? p[k] / 1024 : null;
        });
        traces.push({ x, y, type: "scatter", mode: "lines+markers", name: `${names.get(pid)} ${pid} ${label}`,
          legendgroup: String(pid), line: { color: colour, dash }, hovertemplate: "%{y:.2f} MiB",
          visible: classed && k !== "rss" ? "legendonly" : true });
      }
      if (!classed) return;
      for (const [k, dash, label] of classSeries) {
        const y = META.steps.map((s) => {
          const p = s.processes.find((q) => q.pid === pid);
          return p && p.classes && p.classes[k] != null ? p.classes[k] / 1024 : null;
        });
        if (y.every((v) => v === null)) continue;
        traces.push({ x, y, type: "scatter", mode: "lines+markers", name: `${names.get(pid)} ${pid} ${label}`,
          legendgroup: String(pid), line: { color: colour, dash, width: 3 }, hovertemplate: "%{y:.2f} MiB",
          meta: { cls: k } });
      }
    });
    // copy events from the model; without events (kernel, inspector) pages that got a new frame
    const byEvents = META.events.n > 0;
    traces.push({ x, y: META.steps.map((s) => (byEvents ? s.copies : s.new_frames)), type: "bar",
      name: byEvents ? (KEV ? "model copy events" : "copy events") : "pages with a new frame", yaxis: "y2",
      marker: { color: "rgba(214,39,40,0.35)" }, hovertemplate: byEvents ? "%{y} copies" : "%{y} pages" });
    if (KEV) {  // the kernel's copy events beside the model's
      traces.push({ x, y: META.steps.map((s) => (s.cmp ? s.cmp.copies : null)), type: "bar",
        name: "kernel copy events", yaxis: "y2", marker: { color: "rgba(31,119,180,0.35)" },
        hovertemplate: "%{y} kernel copies" });
    }
    return { x, traces };
  }
  let TL = null;
  function renderTimeline() {
    const div = document.getElementById("timeline");
    if (!window.Plotly) { div.textContent = "plotly.js did not load"; return; }
    TL = timelineData();
    const layout = {
      margin: { t: 30, r: 60, b: 80, l: 60 }, hovermode: "x unified",
      yaxis: { title: { text: "MiB" }, rangemode: "tozero" },
      yaxis2: { title: { text: META.events.n > 0 || KEV ? "copy events" : "pages with a new frame" }, overlaying: "y", side: "right", rangemode: "tozero",
        showgrid: false },
      legend: { orientation: "h", y: -0.25 }, shapes: [currentShape()],
    };
    return Plotly.newPlot(div, TL.traces, layout, { displaylogo: false, responsive: true });
  }
  function currentShape() {
    return { type: "line", xref: "x", yref: "paper", x0: cur, x1: cur, y0: 0, y1: 1,
      line: { color: "#335", width: 1, dash: "dot" } };
  }

  // ---------------------------------------------------------------- event log
  let shown = 0;
  const PAGE_ROWS = 500;
  function rowOrder() {
    // [set, index] of every event: the model's and the kernel's merged by step, the model's first
    const out = [];
    let j = 0;
    for (let i = 0; i < EV.n; i++) {
      while (KEV && j < KEV.n && KEV.step[j] < EV.step[i]) out.push([KEV, j++]);
      out.push([EV, i]);
    }
    while (KEV && j < KEV.n) out.push([KEV, j++]);
    return out;
  }
  let ORDER = null;
  function filtered() {
    const fp = document.getElementById("f-pid").value;
    const fm = document.getElementById("f-mapping").value;
    const fk = document.getElementById("f-kind").value;
    const fside = document.getElementById("f-side").value;
    const fs = document.getElementById("f-step").checked;
    const pid = fp === "" ? null : Number(fp);
    const map = fm === "" ? null : Number(fm);
    if (!ORDER) ORDER = rowOrder();
    const out = [];
    for (const [S, i] of ORDER) {
      if (fside !== "" && S.side !== fside) continue;
      if (pid !== null && S.mpid[i] !== pid) continue;  // the kernel's by the model process they pair with
      if (map !== null && S.mapping[i] !== map) continue;
      if (fk !== "" && S.kinds[S.kind[i]] !== fk) continue;
      if (fs && S.step[i] !== cur) continue;
      out.push([S, i]);
    }
    return out;
  }
  let MATCH = [];
  function renderEvents(reset) {
    const body = document.querySelector("#event-table tbody");
    if (reset) { MATCH = filtered(); shown = 0; body.textContent = ""; }
    const end = Math.min(MATCH.length, shown + PAGE_ROWS);
    const frag = document.createDocumentFragment();
    for (let r = shown; r < end; r++) {
      const [S, i] = MATCH[r];
      const tr = el("tr", { class: "event-row", "data-kind": S.kinds[S.kind[i]], "data-pid": S.pid[i],
        "data-side": S.side, "data-step": S.step[i] });
      const m = S.mapping[i] >= 0 ? META.mapping_names[S.mapping[i]] : "";
      // the kernel's pid and address, with the model's they are placed on
      const elsewhere = (v, mv, f) => (S === KEV && mv >= 0 && mv !== v ? ` (model ${f(mv)})` : "");
      const cells = [S.seq[i], S.step[i] + 1, S.pid[i] + elsewhere(S.pid[i], S.mpid[i], String),
        S.kinds[S.kind[i]], hex(S.addr[i]) + elsewhere(S.addr[i], S.maddr[i], hex), m,
        S.old[i] !== -1 || S.new[i] !== -1 ? `${pfnText(S.old[i])} → ${pfnText(S.new[i])}` : "",
        S.details[S.detail[i]]];
      if (KEV) cells.unshift(S.side);
      const first = KEV ? 1 : 0;
      cells.forEach((v, k) => tr.appendChild(el("td", k === 0 && KEV || k >= 3 + first ? { class: "l" } : null, String(v))));
      frag.appendChild(tr);
    }
    body.appendChild(frag);
    shown = end;
    const count = document.getElementById("event-count");
    const total = EV.n + (KEV ? KEV.n : 0);
    count.textContent = `${MATCH.length} of ${total} events` + (shown < MATCH.length ? ` (first ${shown} shown)` : "");
    count.dataset.matching = MATCH.length;
    count.dataset.shown = shown;
    document.getElementById("event-more").hidden = shown >= MATCH.length;
  }
  function setupFilters() {
    const fill = (id, items) => {
      const s = document.getElementById(id);
      for (const [v, t] of items) s.appendChild(el("option", { value: v }, t));
      s.addEventListener("change", () => renderEvents(true));
    };
    const K = META.cmp_events;
    const pids = new Set(META.events.pids);
    if (KEV) for (let j = 0; j < KEV.n; j++) if (KEV.mpid[j] >= 0) pids.add(KEV.mpid[j]);
    fill("f-pid", [...pids].sort((a, b) => a - b).map((p) => [p, String(p)]));
    const maps = [...new Set([...META.events.mappings, ...(K ? K.mappings : [])])].sort((a, b) => a - b);
    fill("f-mapping", maps.map((m) => [m, META.mapping_names[m]]));
    fill("f-kind", [...new Set([...META.events.kinds, ...(K ? K.kinds : [])])].sort().map((k) => [k, k]));
    fill("f-side", [["model", "model"], ["kernel", "kernel"]]);
    document.getElementById("f-side-label").hidden = !KEV;
    document.getElementById("ev-side-h").hidden = !KEV;
    document.getElementById("f-step").addEventListener("change", () => renderEvents(true));
    document.getElementById("event-more").addEventListener("click", () => renderEvents(false));
    document.getElementById("show-empty").addEventListener("change", () => renderMaps());
    const mp = document.getElementById("map-pid");
    const allPids = [...new Set(META.steps.flatMap((s) => s.processes.map((p) => p.pid)))].sort((a, b) => a - b);
    for (const pid of allPids) mp.appendChild(el("option", { value: pid }, String(pid)));
    mp.addEventListener("change", () => renderMaps());
  }

  // ---------------------------------------------------------------- steps
  function renderLegend() {
    const lg = document.getElementById("legend");
    const groups = [[0], [1], [2], [3, 4, 5, 6, 7, 8, 9, 10], [11], [12], [13], [14, 15]];
    META.legend_groups.forEach((g, n) => {
      const item = el("span", { class: "legend-item" });
      for (const k of groups[n]) {
        const sw = el("span", { class: "swatch" });
        sw.style.background = COLOURS[k];
        item.appendChild(sw);
      }
      item.appendChild(el("code", null, g.char));
      item.appendChild(document.createTextNode(g.name));
      lg.appendChild(item);
    });
    const ch = el("span", { class: "legend-item" });
    const sw = el("span", { class: "swatch" });
    sw.style.background = "linear-gradient(135deg, #000 45%, #fff 45%)";
    ch.appendChild(sw);
    ch.appendChild(document.createTextNode("changed since previous checkpoint"));
    lg.appendChild(ch);
    if (HAS_CLASSES) {
      const cl = el("div", { id: "class-legend" });
      cl.appendChild(el("b", null, "classes against the parent: "));
      CLASSES.forEach((c) => {
        const item = el("span", { class: "legend-item" });
        const s3 = el("span", { class: "swatch" });
        s3.style.background = c.colour;
        item.appendChild(s3);
        item.appendChild(el("code", null, c.char));
        item.appendChild(document.createTextNode(c.name));
        cl.appendChild(item);
      });
      lg.appendChild(cl);
    }
    VD.legend(lg);
  }
  function numbered(i, label) {
    // step number in front, unless the label already starts with it
    return /^\d/.test(label) ? label : `${i + 1}. ${label}`;
  }
  function renderSteps() {
    const list = document.getElementById("step-list");
    const slider = document.getElementById("step-slider");
    slider.max = META.steps.length - 1;
    META.steps.forEach((s, i) => {
      const b = el("button", { "data-step": i }, numbered(i, s.label));
      b.title = `${s.events} events, ${s.copies} copies`;
      b.onclick = () => setStep(i);
      list.appendChild(el("li")).appendChild(b);
    });
    slider.addEventListener("input", () => setStep(Number(slider.value)));
    VD.markSteps();
  }
  function stepInfo() {
    const s = META.steps[cur];
    const parts = Object.entries(s.kinds).map(([k, n]) => `${n} ${k}`);
    const kparts = KEV && s.cmp ? Object.entries(s.cmp.kinds).map(([k, n]) => `${n} ${k}`) : [];
    const t = s.total;
    return `${s.processes.length} process${s.processes.length === 1 ? "" : "es"} · RSS sum ${kb(t.rss_sum_kb)} · real total ${kb(t.total_kb)}` +
      (parts.length ? ` · events since previous checkpoint: ${parts.join(", ")}` : "") +
      (kparts.length ? ` · the kernel's: ${kparts.join(", ")}` : "");
  }
  function setStep(i) {
    cur = i;
    document.getElementById("step-slider").value = i;
    document.getElementById("step-name").textContent = `${i + 1}/${META.steps.length} · ${META.steps[i].label}`;
    document.querySelectorAll("#step-list button").forEach((b) =>
      b.classList.toggle("current", Number(b.dataset.step) === i));
    document.getElementById("step-info").textContent = stepInfo();
    document.getElementById("step-note").textContent = META.steps[i].note || "";
    document.body.dataset.step = i;
    VD.stepPanel(i);
    renderTree();
    VD.comparedTable(i);
    renderMaps();
    if (document.getElementById("f-step").checked) renderEvents(true);
    if (TL && window.Plotly) Plotly.relayout("timeline", { shapes: [currentShape()] });
  }
  R.setStep = setStep;

  async function main() {
    const t0 = performance.now();
    R.scriptStartMs = t0;
    const status = document.getElementById("status");
    if (typeof DecompressionStream === "undefined") {
      status.textContent = "This browser lacks DecompressionStream; open the report in a current browser.";
      status.className = "err";
      return;
    }
    const T = (R.timings = {});
    const mark = (k) => { T[k] = Math.round(performance.now() - t0); };
    BUF = await inflate(b64bytes("blob"));
    mark("data");
    loadEvents();
    if (EV.n === 0 && !(KEV && KEV.n)) document.getElementById("events-section").hidden = true;  // nothing to log
    if (HAS_CLASSES) {
      document.getElementById("colour-by-label").hidden = false;
      document.getElementById("colour-by").addEventListener("change", () => renderMaps());
    }
    renderLegend();
    VD.header();
    renderSteps();
    setupFilters();
    renderEvents(true);
    setStep(META.steps.length - 1);
    mark("drawn");
    try {
      await renderTimeline();
      mark("timeline");
    } catch (e) {
      R.errors.push("timeline: " + e);
      document.getElementById("timeline").textContent = "timeline failed: " + e;
    }
    R.openMs = performance.now();
    R.buildMs = performance.now() - t0;
    R.ready = true;
    document.body.dataset.ready = "1";
    status.textContent = `${META.steps.length} checkpoints · ${EV.n} events` +
      (KEV ? ` (the kernel's: ${KEV.n})` : "") + ` · generated ${META.generated}` +
      ` · drawn in ${Math.round(R.buildMs)} ms`;
  }
  main().catch((e) => {
    R.errors.push(String(e && e.stack ? e.stack : e));
    document.getElementById("status").textContent = "report failed: " + e;
    document.body.dataset.ready = "error";
  });
})();
