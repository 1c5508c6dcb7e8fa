// JSON API client: same-origin fetches carry the HttpOnly session cookie; writes add X-CSRF-Token.

// The panels that take the header's instance filter (the API refuses it elsewhere).
const WITH_INSTANCE = new Set(["overview", "system", "ai", "errors", "traces", "sessions", "map", "map_node",
  "services", "metric_names", "metric", "compare"]);

function instanceFilter() {
  const input = document.getElementById("instance");
  return input ? input.value.trim() : "";
}

export async function get(name, params = {}) {
  const qs = new URLSearchParams();
  const instance = instanceFilter();
  if (instance && WITH_INSTANCE.has(name) && !("instance" in params)) qs.append("instance", instance);
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === "") continue;
    if (Array.isArray(v)) v.forEach((x) => qs.append(k, x));
    else qs.append(k, v);
  }
  const res = await fetch(`/api/${name}${qs.toString() ? `?${qs}` : ""}`, { credentials: "same-origin" });
  const body = await res.json().catch(() => ({ error: `HTTP ${res.status}` }));
  if (!res.ok) throw new Error(body.error || `HTTP ${res.status}`);
  return body;
}

export async function post(name, payload) {
  const { csrf } = await get("csrf");
  const res = await fetch(`/api/${name}`, {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
    body: JSON.stringify(payload),
  });
  const body = await res.json().catch(() => ({ error: `HTTP ${res.status}` }));
  if (!res.ok) throw new Error(body.error || `HTTP ${res.status}`);
  return body;
}
