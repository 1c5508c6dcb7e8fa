// Single-page app: hash routes (#/page?param=value), one render function per page.
// Pages set main[data-ready=<page>] once their data is on screen (the browser tests wait for it).
import { clear, el, errorBox } from "./dom.js";
import { ai, errors, overview } from "./pages_metrics.js";
import { compare } from "./pages_explore.js";
import { map } from "./pages_map.js";
import { alerts, sessions, tail, traces } from "./pages_records.js";
import { metrics, services } from "./pages_views.js";

const PAGES = [
  ["overview", "Overview", overview],
  ["ai", "AI", ai],
  ["errors", "Errors", errors],
  ["map", "Map", map],
  ["services", "Services", services],
  ["metrics", "Metrics", metrics],
  ["traces", "Traces", traces],
  ["compare", "Compare", compare],
  ["tail", "Live tail", tail],
  ["sessions", "Sessions", sessions],
  ["alerts", "Alerts & retention", alerts],
];

let generation = 0;
let cleanup = null;

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [name, query] = raw.split("?");
  const page = PAGES.find((p) => p[0] === name) || PAGES[0];
  return { page, params: new URLSearchParams(query || "") };
}

export function navigate(name, params = {}) {
  const q = new URLSearchParams();  // an array value (attr filters) becomes repeated parameters
  for (const [k, v] of Object.entries(params)) (Array.isArray(v) ? v : [v]).forEach((x) => q.append(k, x));
  const qs = q.toString();
  location.hash = `#/${name}${qs ? `?${qs}` : ""}`;
}

async function render() {
  const gen = ++generation;
  if (cleanup) { try { cleanup(); } catch (e) { /* page already gone */ } cleanup = null; }
  const { page, params } = parseHash();
  const [name, , fn] = page;
  document.querySelectorAll("#nav a").forEach((a) => a.classList.toggle("active", a.dataset.page === name));
  const main = clear(document.getElementById("main"));
  main.removeAttribute("data-ready");
  // A fresh container per render: a slower, superseded render fills its own detached view, never this one.
  const view = main.appendChild(el("div", { class: "view" }));
  const windowSel = document.getElementById("window");
  const ctx = {
    main: view, params, last: windowSel.value, navigate,
    alive: () => gen === generation,
  };
  try {
    const result = await fn(ctx);
    if (gen !== generation) { if (typeof result === "function") result(); return; }
    cleanup = typeof result === "function" ? result : null;
  } catch (err) {
    if (gen !== generation) return;
    view.appendChild(errorBox(err));
  }
  if (gen === generation) main.setAttribute("data-ready", name);
}

function init() {
  const nav = document.getElementById("nav");
  for (const [name, label] of PAGES) nav.appendChild(el("a", { href: `#/${name}`, "data-page": name, text: label }));
  document.getElementById("window").addEventListener("change", render);
  document.getElementById("instance").addEventListener("change", render);
  window.addEventListener("hashchange", render);
  render();
}

init();
