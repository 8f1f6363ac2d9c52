// The API as the dashboard calls it: the key from sessionStorage in the Authorization
// header (never in a URL), same origin only, and `x-ratequeue-forward` so that a
// follower forwards leader-only calls to the leader itself instead of answering 307
// (docs/dashboard.md). Errors carry the API's own code and message.

const KEY = "ratequeue.key";

export const key = {
  get: () => sessionStorage.getItem(KEY),
  set: (k) => sessionStorage.setItem(KEY, k),
  clear: () => sessionStorage.removeItem(KEY),
};

export class ApiError extends Error {
  constructor(status, code, message, retryAfterMs) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfterMs = retryAfterMs;
  }
}

/** Path segment: resource and key names are [A-Za-z0-9._:-], but never trust that. */
export const seg = (s) => encodeURIComponent(s);

export async function call(method, path, body, token = key.get()) {
  const headers = { "x-ratequeue-forward": "1" };
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  let resp;
  try {
    resp = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials: "omit",
      // A redirect would be cross-origin and lose the Authorization header: the node
      // forwards instead, so any redirect is an error.
      redirect: "error",
    });
  } catch {
    throw new ApiError(0, "unreachable", "This node does not answer. Retrying…");
  }
  const text = await resp.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!resp.ok) {
    const e = data && data.error;
    throw new ApiError(
      resp.status,
      e ? e.code : `http_${resp.status}`,
      e ? e.message : text.trim() || resp.statusText,
      e ? e.retry_after_ms : undefined,
    );
  }
  return data;
}

export const get = (path) => call("GET", path);
