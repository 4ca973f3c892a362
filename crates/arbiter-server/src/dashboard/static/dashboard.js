// arbiter's fleet dashboard: reads GET /v1/ns/{ns}/dashboard/stream (Server-Sent Events)
// with fetch(), since EventSource cannot send the Authorization header, and shows each
// snapshot. Every value from the server is inserted with textContent or as an attribute,
// never as HTML: loop names, lease holders and notification titles are anyone's input.
"use strict";

(() => {
  const TOKEN_KEY = "arbiter.token";
  const NS_KEY = "arbiter.namespace";
  /** Retries after a dropped stream or a 5xx: from 1 s, doubling, to 30 s. */
  const RETRY_FIRST_MS = 1000;
  const RETRY_MAX_MS = 30000;

  const $ = (id) => document.getElementById(id);
  let controller = null;
  let retryTimer = null;
  let retryDelay = RETRY_FIRST_MS;
  /** The namespace whose data the page shows (`null`: none). */
  let shown = null;

  // --- the token and the namespace ---------------------------------------------------

  /** `#token=…&ns=…`: kept for this tab only, then removed from the address bar and the
   * history (a fragment is never sent to a server, so it is never in a log). */
  function readFragment() {
    const hash = location.hash.replace(/^#/, "");
    if (!hash) return;
    const params = new URLSearchParams(hash);
    const token = params.get("token");
    const ns = params.get("ns");
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    if (ns) sessionStorage.setItem(NS_KEY, ns);
    history.replaceState(null, "", location.pathname + location.search);
  }

  function namespace() {
    return sessionStorage.getItem(NS_KEY) || "default";
  }

  // --- connection state and errors ---------------------------------------------------

  function setConn(state, text) {
    const conn = $("conn");
    conn.dataset.state = state;
    conn.textContent = text;
  }

  function showError(text) {
    const error = $("error");
    error.textContent = text;
    error.hidden = !text;
  }

  /** The API's error body (`{error, message}`) as one line, whatever the body was. */
  async function describe(response) {
    const text = await response.text().catch(() => "");
    let body = null;
    try {
      body = JSON.parse(text);
    } catch (_) {
      body = null;
    }
    const code = body && body.error ? body.error : response.statusText;
    const message = body && body.message ? body.message : text;
    return `${response.status} ${code}: ${message}`.trim();
  }

  const HINTS = {
    401: "give a token (arbiter token create) in the form above, or open this page as /#token=arb_…",
    403: "this token does not reach that namespace, or lacks status:read",
  };

  function stop() {
    if (controller) controller.abort();
    controller = null;
    clearTimeout(retryTimer);
    retryTimer = null;
  }

  function retry(why) {
    showError(why);
    const seconds = Math.round(retryDelay / 1000);
    setConn("retrying", `reconnecting in ${seconds} s`);
    retryTimer = setTimeout(connect, retryDelay);
    retryDelay = Math.min(retryDelay * 2, RETRY_MAX_MS);
  }

  // --- the stream --------------------------------------------------------------------

  async function connect() {
    stop();
    const ns = namespace();
    const token = sessionStorage.getItem(TOKEN_KEY);
    // Another namespace's data would read as this one's while it fails or loads.
    if (shown !== ns) clear();
    const ctl = new AbortController();
    controller = ctl;
    setConn("connecting", `connecting to ${ns}…`);
    const headers = { Accept: "text/event-stream" };
    if (token) headers.Authorization = `Bearer ${token}`;
    let response;
    try {
      response = await fetch(`/v1/ns/${encodeURIComponent(ns)}/dashboard/stream`, {
        headers,
        signal: ctl.signal,
        cache: "no-store",
      });
    } catch (e) {
      if (!ctl.signal.aborted) retry(`cannot reach the server: ${e.message}`);
      return;
    }
    if (!response.ok) {
      const text = await describe(response);
      if (response.status >= 500) {
        retry(text);
      } else {
        // Retrying cannot help: the token or the namespace must change first.
        const hint = HINTS[response.status];
        showError(hint ? `${text}\n${hint}` : text);
        setConn("failed", "not connected");
      }
      return;
    }
    showError("");
    retryDelay = RETRY_FIRST_MS;
    setConn("live", `live: ${ns}`);
    try {
      await readEvents(response.body, (event, data) => onEvent(event, data));
    } catch (e) {
      if (ctl.signal.aborted) return;
      retry(`the stream broke: ${e.message}`);
      return;
    }
    if (!ctl.signal.aborted) retry("the server ended the stream");
  }

  /** A Server-Sent Events parser over a fetch body: calls `dispatch(event, data)` for
   * each event (comments, `id` and `retry` are ignored). */
  async function readEvents(body, dispatch) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let pending = "";
    let event = "";
    let data = [];
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      pending += value;
      const lines = pending.split(/\r\n|\r|\n/);
      pending = lines.pop();
      for (const line of lines) {
        if (line === "") {
          if (data.length) dispatch(event || "message", data.join("\n"));
          event = "";
          data = [];
          continue;
        }
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let val = colon < 0 ? "" : line.slice(colon + 1);
        if (val.startsWith(" ")) val = val.slice(1);
        if (field === "event") event = val;
        else if (field === "data") data.push(val);
      }
    }
  }

  function onEvent(event, data) {
    if (event === "snapshot") {
      render(JSON.parse(data));
    } else if (event === "error") {
      // The server ends the stream after it; the reconnect says so too.
      let body = {};
      try {
        body = JSON.parse(data);
      } catch (_) {
        body = { message: data };
      }
      showError(`${body.error || "error"}: ${body.message || ""}`);
    }
  }

  // --- rendering (text only) ---------------------------------------------------------

  /** A cell: a string, or `{text, state, title}`. */
  function cell(value) {
    const td = document.createElement("td");
    if (value !== null && typeof value === "object") {
      td.textContent = value.text;
      if (value.state) td.dataset.state = value.state;
      if (value.title) td.title = value.title;
    } else {
      td.textContent = value === null || value === undefined ? "" : String(value);
    }
    return td;
  }

  function fill(table, rows, emptyId, emptyText) {
    const tbody = $(table).tBodies[0];
    tbody.replaceChildren(
      ...rows.map((cells) => {
        const tr = document.createElement("tr");
        tr.append(...cells.map(cell));
        return tr;
      }),
    );
    if (emptyId) {
      const empty = $(emptyId);
      empty.hidden = rows.length > 0;
      empty.textContent = emptyText;
    }
  }

  function duration(ms) {
    if (ms === null || ms === undefined) return "";
    const s = Math.max(0, Math.round(ms / 1000));
    if (s < 120) return `${s} s`;
    if (s < 7200) return `${Math.round(s / 60)} min`;
    return `${(s / 3600).toFixed(1)} h`;
  }

  /** An RFC 3339 time as the local time, and how far from now. */
  function when(iso) {
    if (!iso) return "";
    const t = Date.parse(iso);
    if (Number.isNaN(t)) return iso;
    const delta = t - Date.now();
    const rel = delta >= 0 ? `in ${duration(delta)}` : `${duration(-delta)} ago`;
    return `${new Date(t).toLocaleTimeString()} (${rel})`;
  }

  function clear() {
    for (const table of ["loops", "budgets", "leases", "outbox", "limits"]) {
      $(table).tBodies[0].replaceChildren();
    }
    for (const id of ["loops-empty", "budgets-empty", "leases-empty", "limits-empty"]) $(id).hidden = true;
    $("outbox-summary").textContent = "";
    $("updated").textContent = "";
    shown = null;
  }

  function render(snap) {
    shown = snap.namespace;
    const fleet = snap.loops || { loops: [], github: [] };
    fill(
      "loops",
      fleet.loops.map((l) => [
        l.loop,
        { text: l.state, state: l.state },
        l.pid ? `${l.host} (pid ${l.pid})` : l.host,
        l.round,
        { text: l.last_status || "", state: l.last_status, title: l.last_reason || "" },
        l.consecutive_failures,
        l.next_run_in_ms > 0 ? `in ${duration(l.next_run_in_ms)}` : "due",
        l.api_calls_per_round === null ? "" : l.api_calls_per_round.toFixed(1),
      ]),
      "loops-empty",
      "no loops in this namespace",
    );
    const budgets = [];
    for (const id of fleet.github || []) {
      for (const r of id.resources) {
        budgets.push([
          id.login,
          r.resource,
          r.left,
          r.limit,
          when(r.reset_at),
          duration(r.exhausted_in_ms),
          when(id.paused_until || r.frozen_until),
        ]);
      }
    }
    fill("budgets", budgets, "budgets-empty", "no GitHub identities");

    const leases = snap.leases;
    fill(
      "leases",
      (leases || []).map((l) => [
        l.name,
        l.holder.agent,
        l.holder.host,
        l.holder.pid,
        l.slots,
        l.token,
        when(l.expires_at),
      ]),
      "leases-empty",
      leases ? "no leases held" : "this token cannot read leases (lease:read)",
    );

    const outbox = snap.outbox;
    const summary = $("outbox-summary");
    if (outbox) {
      const count = (n) => (n >= outbox.counted_up_to ? `${n}+` : `${n}`);
      const age = outbox.oldest_pending_age_ms === null ? "" : ` · oldest pending waited ${duration(outbox.oldest_pending_age_ms)}`;
      summary.textContent = `${count(outbox.pending)} pending · ${count(outbox.dead)} dead${age}`;
    } else {
      summary.textContent = "this token cannot read the outbox (notify:read)";
    }
    fill(
      "outbox",
      (outbox ? outbox.recent : []).map((e) => [
        e.id,
        e.channel,
        { text: e.state, state: e.state },
        e.message.notification.kind,
        e.message.notification.title,
        e.attempts,
        when(new Date(e.created_at).toISOString()),
        e.last_error || "",
      ]),
    );

    const limits = snap.limits;
    fill(
      "limits",
      (limits || []).map((b) => [
        b.name,
        b.rate,
        b.tokens,
        b.burst,
        `${b.reserve_percent} %`,
        when(b.frozen_until),
        when(b.reset_at),
      ]),
      "limits-empty",
      limits ? "no buckets defined" : "this token cannot read limits (limit:read)",
    );
    $("updated").textContent = `namespace ${snap.namespace} · updated ${new Date().toLocaleTimeString()}`;
  }

  // --- the form ------------------------------------------------------------------------

  function start() {
    readFragment();
    $("ns").value = namespace();
    $("connect").addEventListener("submit", (e) => {
      e.preventDefault();
      const token = $("token").value.trim();
      if (token) sessionStorage.setItem(TOKEN_KEY, token);
      $("token").value = "";
      sessionStorage.setItem(NS_KEY, $("ns").value.trim() || "default");
      retryDelay = RETRY_FIRST_MS;
      connect();
    });
    $("forget").addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      stop();
      setConn("idle", "token forgotten: not connected");
    });
    // A token or namespace pasted into the address bar of the open page.
    window.addEventListener("hashchange", () => {
      if (!location.hash) return;
      readFragment();
      $("ns").value = namespace();
      retryDelay = RETRY_FIRST_MS;
      connect();
    });
    connect();
  }

  start();
})();
