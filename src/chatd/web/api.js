// The HTTP API as the UI uses it: JSON in and out, bearer token, the documented error
// shape ({"error": {"kind", "message", "detail"}}) turned into ApiError.

export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `The server answered ${status}.`);
    this.status = status;
    this.kind = error.kind || "http_error";
    this.detail = error.detail || "";
  }
}

export class Api {
  constructor(token) {
    this.token = token;
  }

  async request(method, path, body) {
    const headers = { Authorization: `Bearer ${this.token}` };
    const init = { method, headers };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return answer(await reach(path, init));
  }

  /** Upload a File or Blob (POST /api/chats/files); its {id, name, media_type, size}. */
  async uploadFile(file, name = file.name) {
    const form = new FormData();
    form.append("file", file, name || "file");
    const init = { method: "POST", headers: { Authorization: `Bearer ${this.token}` }, body: form };
    return answer(await reach("/api/chats/files", init));
  }

  /** An uploaded file's bytes as a Blob, fetched with the token (never in a URL). */
  async fileBlob(id) {
    const init = { headers: { Authorization: `Bearer ${this.token}` } };
    const response = await reach(`/api/chats/files/${encodeURIComponent(id)}`, init);
    if (!response.ok) return answer(response);
    return response.blob();
  }

  me() {
    return this.request("GET", "/api/users/me");
  }

  models() {
    return this.request("GET", "/api/chats/models");
  }

  listChats({ q = "", archived = false } = {}) {
    const params = new URLSearchParams({ archived: archived ? "true" : "false", limit: "200" });
    if (q) params.set("q", q);
    return this.request("GET", `/api/chats?${params}`);
  }

  /** A new chat; `builtinTools` names the built-in tools it gets (none: no `tools` key). */
  createChat(message, model, builtinTools = [], fileIds = [], providerTools = []) {
    const body = { message };
    if (fileIds.length) body.file_ids = fileIds;
    if (model) body.model = model;
    const tools = {};
    if (builtinTools.length) tools.builtin = builtinTools;
    if (providerTools.length) tools.provider = providerTools;
    if (Object.keys(tools).length) body.tools = tools;
    return this.request("POST", "/api/chats", body);
  }

  chat(id) {
    return this.request("GET", `/api/chats/${encodeURIComponent(id)}`);
  }

  patchChat(id, changes) {
    return this.request("PATCH", `/api/chats/${encodeURIComponent(id)}`, changes);
  }

  messages(id) {
    return this.request("GET", `/api/chats/${encodeURIComponent(id)}/messages`);
  }

  send(id, message, busyBehavior, model, fileIds = []) {
    const body = { message, busy_behavior: busyBehavior };
    if (fileIds.length) body.file_ids = fileIds;
    if (model) body.model = model;
    return this.request("POST", `/api/chats/${encodeURIComponent(id)}/messages`, body);
  }

  edit(id, messageId, message) {
    const path = `/api/chats/${encodeURIComponent(id)}/messages/${encodeURIComponent(messageId)}`;
    return this.request("PATCH", path, { message });
  }

  interrupt(id) {
    return this.request("POST", `/api/chats/${encodeURIComponent(id)}/interrupt`);
  }

  compact(id) {
    return this.request("POST", `/api/chats/${encodeURIComponent(id)}/compact`);
  }

  approvePlan(id) {
    return this.request("POST", `/api/chats/${encodeURIComponent(id)}/plan/approve`);
  }

  toolResults(id, results) {
    return this.request("POST", `/api/chats/${encodeURIComponent(id)}/tool-results`, { results });
  }

  deleteQueued(id, queuedId) {
    const path = `/api/chats/${encodeURIComponent(id)}/queue/${encodeURIComponent(queuedId)}`;
    return this.request("DELETE", path);
  }

  promoteQueued(id, queuedId) {
    const path = `/api/chats/${encodeURIComponent(id)}/queue/${encodeURIComponent(queuedId)}`;
    return this.request("POST", `${path}/promote`);
  }

  cost(id) {
    return this.request("GET", `/api/chats/${encodeURIComponent(id)}/cost`);
  }

  streamUrl(id, after) {
    // EventSource cannot send headers: the stream routes accept ?access_token= (spec §6.2).
    const params = new URLSearchParams({ access_token: this.token, after: String(after) });
    return `/api/chats/${encodeURIComponent(id)}/stream?${params}`;
  }
}

async function reach(path, init) {
  try {
    return await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, {
      error: { kind: "network", message: "The server cannot be reached; retry in a moment." },
    });
  }
}

async function answer(response) {
  if (response.status === 204) return null;
  const text = await response.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = null;
  }
  if (!response.ok) throw new ApiError(response.status, parsed);
  return parsed;
}
