"""The home page's script: reads `/site.json` (now, today, panels, health) and follows the
`/live` event stream for the power figures; polls the JSON instead where the browser has
no EventSource or the stream is refused. Draws the day's curve as inline SVG itself."""

from __future__ import annotations

SCRIPT = r"""
"use strict";
const $ = (id) => document.getElementById(id);
const SLOW = 30000, FAST = 10000, WAIT = 3000;
let site = null, fetchedAt = 0, streaming = false, timer = 0;

function esc(text) {
  return String(text).replace(/[&<>"']/g, (c) => "&#" + c.charCodeAt(0) + ";");
}
function kw(v) {
  return v == null ? "\u2013" : (Math.abs(v) < 100 ? v.toFixed(2) : v.toFixed(0)) + " kW";
}
function kwh(v) {
  return v == null ? "\u2013" : v.toFixed(Math.abs(v) < 100 ? 2 : 0) + " kWh";
}
function watts(v) { return v == null ? "\u2013" : Math.round(v * 1000) + " W"; }
function ago(s) {
  if (s == null) return "never";
  s = Math.max(0, Math.round(s));
  if (s < 90) return s + " s ago";
  if (s < 5400) return Math.round(s / 60) + " min ago";
  if (s < 172800) return Math.round(s / 3600) + " h ago";
  return Math.round(s / 86400) + " d ago";
}
function hhmm(t) {
  return new Date((t + site.utc_offset_s) * 1000).toISOString().slice(11, 16);
}
function elapsed() { return (Date.now() - fetchedAt) / 1000; }

function showPower() {
  const p = site.power;
  $("pv").textContent = kw(p.pv_kw);
  $("pv").dataset.kw = p.pv_kw == null ? "" : p.pv_kw;
  $("load").textContent = kw(p.load_kw);
  const net = p.net_kw;
  $("netlabel").textContent = net == null ? "Grid" : net > 0 ? "Importing" : "Exporting";
  $("net").textContent = kw(net == null ? null : Math.abs(net));
  $("netbox").style.borderTopColor = net == null ? "" : net > 0 ? "var(--use)" : "var(--ok)";
  const when = p.time == null ? "" : " at " + hhmm(p.time);
  $("updated").textContent = site.waiting && p.time == null
    ? "Waiting for the first answer from the PVS\u2026"
    : "Power measured" + when + (streaming ? ", live" : "") + ".";
}

function showToday() {
  const t = site.today;
  $("pvday").textContent = kwh(t.pv_kwh);
  $("loadday").textContent = kwh(t.load_kwh);
  const n = t.net_kwh;
  $("netdaybox").firstChild.textContent = n == null ? "Grid " : n > 0 ? "Imported " : "Exported ";
  $("netday").textContent = kwh(n == null ? null : Math.abs(n));
  const late = t.since != null && t.since - t.start > 900;
  $("since").textContent = t.since == null ? "No energy reading yet today."
    : late ? "Since " + hhmm(t.since) + ", the bridge's first reading today." : "";
}

function niceStep(max) {
  for (const s of [0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100]) if (max / s <= 5) return s;
  return Math.ceil(max / 5);
}
function path(points) {
  let d = "", last = -99;
  for (const [m, x, y] of points) {
    d += m - last > 10 ? "M" + x + " " + y + "h.01" : "L" + x + " " + y;  // a lone one: a dot
    last = m;
  }
  return d;
}
function drawCurve() {
  const svg = $("curve"), width = Math.round(svg.getBoundingClientRect().width) || 600;
  const W = Math.max(280, width), H = Math.round(Math.min(300, Math.max(190, W * .36)));
  const L = 30, R = 8, T = 8, B = 22;
  const t = site.today, c = site.curve, every = W < 480 ? 6 : 3;
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const day = t.minutes || 1440;
  let max = 0.5;
  for (const s of c) max = Math.max(max, s[1] || 0, s[2] || 0);
  const step = niceStep(max), top = Math.ceil(max / step) * step;
  const x = (m) => (L + (W - L - R) * m / day).toFixed(1);
  const y = (v) => (T + (H - T - B) * (1 - v / top)).toFixed(1);
  let g = "";
  for (let v = 0; v <= top + 1e-9; v += step) {
    g += `<line x1="${L}" x2="${W - R}" y1="${y(v)}" y2="${y(v)}" stroke="var(--line)"/>`;
    g += `<text x="${L - 4}" y="${+y(v) + 4}" text-anchor="end">${+v.toFixed(1)}</text>`;
  }
  for (let h = 0; h <= 24; h += every) {
    const anchor = h === 0 ? "start" : h === 24 ? "end" : "middle";
    g += `<text x="${x(h * 60)}" y="${H - 6}" text-anchor="${anchor}">${h}:00</text>`;
  }
  const pv = c.filter((s) => s[1] != null).map((s) => [s[0], x(s[0]), y(s[1])]);
  const load = c.filter((s) => s[2] != null).map((s) => [s[0], x(s[0]), y(s[2])]);
  let area = "";
  for (const part of path(pv).split("M").slice(1)) {
    const first = part.split(" ")[0], last = part.split("L").pop().split(/[ h]/)[0];
    area += `M${first} ${y(0)}L${part}L${last} ${y(0)}Z`;
  }
  g += `<path d="${area}" fill="var(--sun)" opacity=".25"/>`;
  g += `<path d="${path(pv)}" fill="none" stroke="var(--sun)" stroke-width="2"`
    + ` stroke-linecap="round"/>`;
  g += `<path d="${path(load)}" fill="none" stroke="var(--use)" stroke-width="2"`
    + ` stroke-linecap="round"/>`;
  const now = x(Math.min(day, t.now_minute));
  g += `<line x1="${now}" x2="${now}" y1="${T}" y2="${H - B}" stroke="var(--mute)"`
    + ` stroke-dasharray="3 3"/>`;
  if (!c.length) {
    g += `<text x="${W / 2}" y="${H / 2}" text-anchor="middle">No samples yet today</text>`;
  }
  svg.innerHTML = `<g font-size="11" fill="var(--mute)">${g}</g>`;
  svg.dataset.samples = c.length;
}

function drawPanels() {
  const list = site.inverters;
  let top = 0.001;
  for (const i of list) top = Math.max(top, i.kw || 0);
  $("panelhead").textContent = "Panels (" + list.length + ")";
  const words = { stale: "no data lately", low: "low output", high: "unusually high",
    fault: "", idle: "", ok: "" };
  $("panels").innerHTML = list.map((i) => {
    const tail = i.serial.slice(-6), fill = Math.round(100 * (i.kw || 0) / top);
    const note = words[i.flag] ? words[i.flag] + " \u00b7 " : "";
    const title = `${i.serial} ${i.model}, ${kwh(i.kwh)} lifetime, state ${i.state}`;
    return `<div class="tile ${esc(i.flag)}" title="${esc(title)}"><i style="height:${fill}%">`
      + `</i><b>${watts(i.kw)}</b><span>\u2026${esc(tail)}</span><small>${note}${esc(i.state)}`
      + `</small><span>${ago(i.age_s == null ? null : i.age_s + elapsed())}</span></div>`;
  }).join("");
  const odd = list.filter((i) => i.flag !== "ok" && i.flag !== "idle").length;
  $("panelnote").textContent = site.waiting ? "No device list yet."
    : odd ? odd + " panel(s) need a look (outlined or faded)." : "";
}

function showHealth() {
  const h = site.health, box = $("health");
  box.className = h.status;
  $("status").className = "pill " + h.status;
  $("status").textContent = "PVS " + h.status;
  $("summary").textContent = h.summary;
  $("reasons").innerHTML = h.reasons.map((r) => "<li>" + esc(r) + "</li>").join("");
  $("healthmore").textContent = "Last PVS answer " + ago(h.last_answer_age_s == null ? null
    : h.last_answer_age_s + elapsed()) + "; power figures " + h.live + ".";
  $("version").textContent = h.version ? "pvs-bridge " + h.version : "";
}

function render() { showPower(); showToday(); drawCurve(); drawPanels(); showHealth(); }

async function load() {
  clearTimeout(timer);
  try {
    const answer = await fetch("/site.json", { cache: "no-store" });
    if (!answer.ok) throw new Error("HTTP " + answer.status);
    site = await answer.json();
    fetchedAt = Date.now();
    render();
  } catch (error) {
    $("status").textContent = "bridge unreachable";
    $("status").className = "pill down";
  }
  timer = setTimeout(load, !site || site.waiting ? WAIT : streaming ? SLOW : FAST);
}

function frame(event) {
  let f;
  try { f = JSON.parse(event.data); } catch (error) { return; }
  if (!site || !f || f.notification !== "power" || !f.params) return;
  const p = f.params, power = site.power;
  if (typeof p.pv_p === "number") power.pv_kw = p.pv_p;
  if (typeof p.site_load_p === "number") power.load_kw = p.site_load_p;
  if (typeof p.net_p === "number") power.net_kw = p.net_p;
  if (typeof p.time === "number") power.time = p.time > 1e11 ? p.time / 1000 : p.time;
  streaming = true;
  showPower();
}

function follow() {
  if (!window.EventSource) return;
  const stream = new EventSource("/live");
  stream.onmessage = frame;
  stream.onerror = () => { if (stream.readyState === 2) streaming = false; };
}

function start() {
  addEventListener("resize", () => { if (site) drawCurve(); });
  const seed = $("site").textContent;
  if (seed.trim()) {
    try { site = JSON.parse(seed); fetchedAt = Date.now(); render(); } catch (error) {}
  }
  timer = setTimeout(load, site ? 1000 : 0);
  follow();
}

start();
"""
