// Leg Cramp CDS demo page: pick a sample, call the service, render the cards as an EHR
// would, send real feedback. No framework, no external resources. Card text is never parsed
// as HTML: Markdown is rendered into DOM nodes with textContent, links must be http(s).
"use strict";
const $ = (id) => document.getElementById(id);
const SAMPLE_EXT = "org.leg-cramp-cds.sample";
let services = [];

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else if (k.startsWith("data-")) node.setAttribute(k, v); else node[k] = v;
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function uuid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40; b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

// Samples carry dates relative to an anchor instant: shift every date by the whole days
// between the anchor and now (the same convention as `leg-cramp-cds eval`).
function shiftDates(value, days) {
  if (typeof value === "string") return shiftOne(value, days);
  if (Array.isArray(value)) return value.map((v) => shiftDates(v, days));
  if (value && typeof value === "object") {
    const out = {};
    for (const [k, v] of Object.entries(value)) out[k] = shiftDates(v, days);
    return out;
  }
  return value;
}
function shiftOne(s, days) {
  if (!/^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2}))?$/.test(s)) return s;
  const dateOnly = s.length === 10;
  const t = Date.parse(dateOnly ? s + "T00:00:00Z" : s);
  if (Number.isNaN(t)) return s;
  const d = new Date(t + days * 86400000);
  return dateOnly ? d.toISOString().slice(0, 10) : d.toISOString().replace(/\.000Z$/, "Z");
}
function resolveSample(request) {
  const anchor = request.extension && request.extension[SAMPLE_EXT] && request.extension[SAMPLE_EXT].anchor;
  if (!anchor) return request;
  const day = (t) => Math.floor(t / 86400000);
  const days = day(Date.now()) - day(Date.parse(anchor));
  const out = { ...request };
  if (out.context) out.context = shiftDates(out.context, days);
  if (out.prefetch) out.prefetch = shiftDates(out.prefetch, days);
  // Anchored at now from here on, so the service does not shift it again.
  out.extension = { ...out.extension, [SAMPLE_EXT]: { ...out.extension[SAMPLE_EXT], anchor: new Date().toISOString() } };
  return out;
}

// Minimal, safe Markdown: paragraphs, "- " and "1. " lists, **bold**, [text](http(s) url).
function renderMarkdown(text) {
  const frag = document.createDocumentFragment();
  for (const block of String(text).split(/\n\s*\n/)) {
    // Within a block, runs of list items become lists (GFM lets a list interrupt a paragraph).
    let para = null, list = null, listKind = "";
    for (const line of block.split("\n")) {
      if (line.trim() === "") continue;
      const bullet = /^\s*- (.*)$/.exec(line), numbered = /^\s*\d+\. (.*)$/.exec(line);
      const item = bullet || numbered;
      if (item) {
        const kind = bullet ? "ul" : "ol";
        if (!list || listKind !== kind) { list = el(kind); listKind = kind; frag.append(list); }
        list.append(el("li", {}, inline(item[1])));
        para = null;
      } else {
        if (!para) { para = el("p"); frag.append(para); } else para.append(el("br"));
        para.append(inline(line));
        list = null;
      }
    }
  }
  return frag;
}
function inline(text) {
  const frag = document.createDocumentFragment();
  const re = /\*\*([^*]+)\*\*|\[([^\]]+)\]\(([^)\s]+)\)/g;
  let last = 0, m;
  while ((m = re.exec(text))) {
    frag.append(document.createTextNode(text.slice(last, m.index)));
    if (m[1] !== undefined) frag.append(el("strong", {}, m[1]));
    else if (/^https?:\/\//i.test(m[3])) frag.append(el("a", { href: m[3], target: "_blank", rel: "noopener noreferrer" }, m[2]));
    else frag.append(document.createTextNode(m[0]));
    last = re.lastIndex;
  }
  frag.append(document.createTextNode(text.slice(last)));
  return frag;
}

function setStatus(text, isError) {
  const s = $("status");
  s.textContent = text;
  s.className = "status" + (isError ? " error" : "");
}

async function sendFeedback(serviceId, item, statusNode, card) {
  statusNode.textContent = "sending…";
  try {
    const res = await fetch(`/cds-services/${encodeURIComponent(serviceId)}/feedback`, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ feedback: [{ ...item, outcomeTimestamp: new Date().toISOString() }] }),
    });
    const body = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error((body.issue && body.issue[0] && body.issue[0].diagnostics) || res.statusText);
    statusNode.textContent = item.outcome === "accepted" ? "Accepted — feedback recorded" : "Dismissed — feedback recorded";
    statusNode.setAttribute("data-state", item.outcome);
    card.classList.add("done");
    card.querySelectorAll("button").forEach((b) => (b.disabled = true));
  } catch (e) {
    statusNode.textContent = "Feedback failed: " + e.message;
    statusNode.setAttribute("data-state", "error");
  }
}

const ICONS = { info: "i", warning: "!", critical: "!!" };

function renderCard(card, serviceId) {
  const node = el("article", { class: `card ${card.indicator}`, "data-rule": (card.source.topic || {}).code || "", "data-uuid": card.uuid || "" });
  node.append(el("div", { class: "head" },
    el("span", { class: "icon", title: card.indicator }, ICONS[card.indicator] || "i"),
    el("div", {}, el("div", { class: "indicator" }, card.indicator), el("h3", { class: "summary" }, card.summary))));
  if (card.detail) node.append(el("div", { class: "detail" }, renderMarkdown(card.detail)));
  const meta = el("div", { class: "meta" });
  const source = card.source.url ? el("a", { href: card.source.url, target: "_blank", rel: "noopener noreferrer" }, card.source.label) : card.source.label;
  meta.append("Source: ", source);
  if (card.source.topic) meta.append(` · rule ${card.source.topic.code}`);
  const evidence = card.extension && card.extension["org.leg-cramp-cds.evidence"];
  if (evidence && evidence.resources && evidence.resources.length) {
    meta.append(el("div", { class: "evidence" }, "Evidence: " + evidence.resources.join(", ")));
  }
  if (card.links && card.links.length) {
    meta.append(el("div", {}, "References: ", ...card.links.flatMap((l, i) => [i ? " · " : "",
      /^https?:\/\//i.test(l.url) ? el("a", { href: l.url, target: "_blank", rel: "noopener noreferrer" }, l.label) : l.label])));
  }
  node.append(meta);
  const actions = el("div", { class: "actions" });
  const status = el("span", { class: "feedback-status" });
  for (const s of card.suggestions || []) {
    const b = el("button", { class: "suggestion", type: "button" }, s.label);
    b.addEventListener("click", () => sendFeedback(serviceId, { card: card.uuid, outcome: "accepted", acceptedSuggestions: [{ id: s.uuid }] }, status, node));
    actions.append(b);
  }
  const reasons = el("select", { class: "override-reason", "aria-label": "Override reason" },
    ...(card.overrideReasons || []).map((r, i) => el("option", { value: String(i) }, r.display || r.code)));
  const dismiss = el("button", { class: "dismiss", type: "button" }, "Dismiss");
  dismiss.addEventListener("click", () => {
    const reason = (card.overrideReasons || [])[Number(reasons.value)];
    const item = { card: card.uuid, outcome: "overridden" };
    if (reason) item.overrideReason = { reason };
    sendFeedback(serviceId, item, status, node);
  });
  if ((card.overrideReasons || []).length) actions.append(reasons);
  actions.append(dismiss, status);
  node.append(actions);
  return node;
}

async function run() {
  const cardsNode = $("cards");
  cardsNode.replaceChildren();
  let request;
  try { request = JSON.parse($("request").value); } catch (e) { setStatus("The request is not valid JSON: " + e.message, true); return; }
  request = resolveSample(request);
  request.hookInstance = uuid();
  const serviceId = $("service").value;
  setStatus("Calling " + serviceId + "…");
  const started = performance.now();
  try {
    const res = await fetch(`/cds-services/${encodeURIComponent(serviceId)}`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(request),
    });
    const body = await res.json();
    const ms = Math.round(performance.now() - started);
    if (!res.ok) {
      const issues = (body.issue || []).map((i) => i.diagnostics).join("; ");
      setStatus(`HTTP ${res.status}: ${issues}`, true);
      return;
    }
    const cards = body.cards || [];
    cards.forEach((c) => cardsNode.append(renderCard(c, serviceId)));
    const warnings = body.extension && body.extension["org.leg-cramp-cds.warnings"];
    setStatus(`${cards.length} card${cards.length === 1 ? "" : "s"} in ${ms} ms` + (warnings ? ` · ${warnings.length} data warning(s)` : ""));
    document.body.setAttribute("data-ready", "true");
  } catch (e) {
    setStatus("The call failed: " + e.message, true);
  }
}

async function loadSample(name) {
  const res = await fetch(`/samples/${encodeURIComponent(name)}`);
  if (!res.ok) { setStatus(`No sample named ${name}`, true); return false; }
  const request = await res.json();
  $("request").value = JSON.stringify(request, null, 2);
  const meta = request.extension && request.extension[SAMPLE_EXT];
  $("sample-title").textContent = meta ? meta.title : "";
  const svc = services.find((s) => s.hook === request.hook);
  if (svc) $("service").value = svc.id;
  $("sample").value = name;
  return true;
}

async function init() {
  try {
    const [disc, samples] = await Promise.all([fetch("/cds-services").then((r) => r.json()), fetch("/samples").then((r) => r.json())]);
    services = disc.services || [];
    $("service").replaceChildren(...services.map((s) => el("option", { value: s.id }, `${s.title || s.id} (${s.hook})`)));
    for (const s of samples.samples || []) $("sample").append(el("option", { value: s.name }, s.title || s.name));
  } catch (e) {
    setStatus("Could not load services or samples: " + e.message, true);
  }
  $("sample").addEventListener("change", async (e) => { if (e.target.value && await loadSample(e.target.value)) run(); });
  $("run").addEventListener("click", run);
  const wanted = new URLSearchParams(location.search).get("sample");
  if (wanted && await loadSample(wanted)) run();
}
init();
