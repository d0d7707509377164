// The live leaderboard page: the top 10 of each board's current season, live over AppSync Events, for anyone; log in
// to see your own rank on the board shown and play.
// No framework and no build step. Server data only ever reaches the page through textContent and data-* attributes.
"use strict";

(() => {
  // --- Settings --------------------------------------------------------------------------------------------------

  const REFRESH_AT_FRACTION = 0.8; // refresh the access token at 80% of its lifetime
  const REFRESH_RETRY_MS = 15_000; // a refresh that failed for a reason other than 401 is tried again
  const BACKOFF_BASE_MS = 1_000;
  const BACKOFF_CAP_MS = 30_000;
  const STABLE_CONNECTION_MS = 10_000; // a connection that lasted this long resets the backoff
  const RENEW_SUBSCRIPTIONS_MS = 5 * 60_000; // the live feed's contract: subscriptions are renewed every 5 minutes
  const DEFAULT_CONNECTION_TIMEOUT_MS = 300_000; // no "ka" for this long: the connection is dead
  const SUBSCRIBE_RETRY_MS = 5_000;
  const STANDING_MIN_INTERVAL_MS = 1_000; // GET /v1/boards/{board}/scores/{user_id} after a change of your own
  const STANDING_ON_BOARD_CHANGE_MS = 5_000; // ... and after any other change of the top 10
  const CHANGE_MARK_MS = 8_000; // how long ▲/▼/new stay on a row
  const NOTICE_MS = 10_000;
  const ANNOUNCE_MIN_INTERVAL_MS = 5_000; // screen readers hear "Top 10 updated" at most this often
  const SEASON_RECHECK_MS = 5_000; // a season over by our clock but not yet by the server's: ask again this often
  // Every open page reaches a reset at the same second: each waits a random moment up to this long before asking
  // for the new season, so 100,000 viewers make about 3,000 requests a second, not 100,000 (config.json may change
  // it: `resetSpreadSeconds`).
  const RESET_SPREAD_SECONDS = 30;
  const SESSION_KEY = "leaderboard.session";
  // + the username in lower case: the device token of the account's last login in this browser (see logIn)
  const DEVICE_KEY_PREFIX = "leaderboard.device.";
  const TOP_SIZE = 10;
  const DEFAULT_BOARD = "global"; // shown first; its rank messages come on /players/<id>, the others' on .../<board>
  const ALL_TIME = "all"; // the one season of a board that never resets
  const ANONYMOUS = "anonymous"; // the authorization value of a viewer who is not logged in
  // Until GET /v1/boards answers (or if it never does), the page shows the board every stack has.
  const FALLBACK_BOARD = { id: DEFAULT_BOARD, title: "All time", season: ALL_TIME, endsAt: null };

  const byId = (id) => document.getElementById(id);
  const ui = {
    connection: document.querySelector('[data-testid="connection-status"]'),
    connectionText: document.querySelector('[data-testid="connection-text"]'),
    auth: byId("auth"),
    authProblem: byId("auth-problem"),
    loginForm: byId("login-form"),
    registerForm: byId("register-form"),
    game: byId("game"),
    meName: byId("me-name"),
    meRank: byId("me-rank"),
    meScore: byId("me-score"),
    meNoScore: byId("me-no-score"),
    meBoard: byId("me-board"),
    rankNotice: byId("rank-notice"),
    play: byId("play"),
    playResult: byId("play-result"),
    logout: byId("logout"),
    neighbours: byId("neighbours"),
    tabs: byId("board-tabs"),
    panel: byId("board-panel"),
    season: byId("board-season"),
    countdown: byId("board-countdown"),
    top10: byId("top10"),
    top10Empty: byId("top10-empty"),
    boardStatus: byId("board-status"),
    rowTemplate: byId("row-template"),
    tabTemplate: byId("tab-template"),
  };

  // --- State -----------------------------------------------------------------------------------------------------

  let config = null; // {apiUrl, liveUrl, liveHost, resetSpreadMs}
  // The tokens live in memory. They touch sessionStorage only while the page unloads (so a reload keeps you logged
  // in) and are taken out again as soon as the page is back: a duplicated tab copies sessionStorage, and two tabs
  // spending one rotating refresh token would look like token theft and end the session.
  let session = null; // {accessToken, refreshToken, userId, label, expiresAt, refreshDueAt, issuedAt}
  let refreshing = null; // the one refresh in flight (a second one would spend a spent token and revoke the session)
  const timers = { refresh: 0, notice: 0, retryAfter: 0 }; // the session's: cleared when it ends
  // The live connection: one WebSocket to the Event API; its subscriptions (channel -> id) and those asked for
  // (id -> {channel, the id it replaces}).
  const live = { socket: null, acked: false, attempt: 0, openedAt: 0, subscriptions: new Map(), pending: new Map() };
  const liveTimers = { watchdog: 0, renew: 0, retry: 0, reconnect: 0, countdown: 0 };
  const boardTimers = { marks: 0, seasonTick: 0 };
  // The boards (GET /v1/boards, cleaned): their definitions and current seasons, in the API's order.
  const boards = { list: [FALLBACK_BOARD], loaded: false, loading: null, recheckAt: 0, spreadFor: null };
  // The season on screen, one board's: a new object for each board and season, so that everything ordered by `seq`
  // (the top 10 and your rank: a new season starts its own seq) starts afresh with it.
  let board = newBoardState(FALLBACK_BOARD);
  let lastAnnouncedAt = 0;
  const standing = { inFlight: false, again: null, lastAt: 0, timer: 0, dueAt: 0 };

  // --- Config ----------------------------------------------------------------------------------------------------

  function withoutTrailingSlash(url) {
    return url.replace(/\/+$/, "");
  }

  async function loadConfig() {
    // The local runtime's Event API listens on port 3001 of the page's host.
    const secure = location.protocol === "https:";
    const defaults = {
      apiUrl: location.origin,
      liveUrl: `${secure ? "wss" : "ws"}://${location.hostname}:3001/event/realtime`,
      liveHttpUrl: `${secure ? "https" : "http"}://${location.hostname}:3001/event`,
    };
    let found = {};
    try {
      const response = await fetch("config.json", { cache: "no-store" });
      if (response.ok) found = await response.json();
    } catch {
      found = {}; // no config.json (or not JSON): the local runtime's defaults
    }
    const pick = (value, fallback) => (typeof value === "string" && value.trim() ? value.trim() : fallback);
    let liveHost = "";
    try {
      liveHost = new URL(pick(found && found.liveHttpUrl, defaults.liveHttpUrl)).host;
    } catch {
      liveHost = ""; // no live feed: the board still loads over HTTP
    }
    const spread = Number(found && found.resetSpreadSeconds);
    return {
      apiUrl: withoutTrailingSlash(pick(found && found.apiUrl, defaults.apiUrl)),
      liveUrl: pick(found && found.liveUrl, defaults.liveUrl),
      liveHost,
      resetSpreadMs: 1000 * (Number.isFinite(spread) && spread >= 0 ? spread : RESET_SPREAD_SECONDS),
    };
  }

  // --- HTTP ------------------------------------------------------------------------------------------------------

  const STATUS_TEXT = {
    0: "Cannot reach the server. Check your connection and try again.",
    401: "You are not logged in.",
    403: "Your session is no longer valid.",
    404: "Not found.",
    413: "That request is too large.",
    429: "Too many requests.",
    500: "The server had a problem. Try again in a moment.",
    502: "The server had a problem. Try again in a moment.",
    503: "The service is busy. Try again in a moment.",
    504: "The server took too long to answer. Try again.",
  };

  class ApiError extends Error {
    constructor(status, message, { retryAfter = null, fromGateway = false } = {}) {
      super(message);
      this.status = status;
      this.retryAfter = retryAfter; // seconds, or null
      this.fromGateway = fromGateway; // API Gateway's own answer ({"message": ...}), not the application's problem
    }

    describe() {
      if (this.retryAfter !== null) return `${this.message} Try again in ${plural(this.retryAfter, "second")}.`;
      return this.message;
    }
  }

  function plural(count, word) {
    return `${count} ${word}${count === 1 ? "" : "s"}`;
  }

  function retryAfterSeconds(response) {
    // Cross-origin, the API must list Retry-After in its CORS ExposeHeaders for the page to see it.
    const value = response.headers.get("Retry-After");
    if (!value) return null;
    if (/^\d+$/.test(value.trim())) return Math.max(1, Number(value.trim()));
    const date = Date.parse(value);
    return Number.isNaN(date) ? null : Math.max(1, Math.ceil((date - Date.now()) / 1000));
  }

  async function request(method, path, { body, token, headers = {} } = {}) {
    const init = { method, headers: { Accept: "application/json, application/problem+json", ...headers } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    if (token) init.headers.Authorization = `Bearer ${token}`;
    let response;
    try {
      response = await fetch(config.apiUrl + path, init);
    } catch {
      throw new ApiError(0, STATUS_TEXT[0]);
    }
    let data = null;
    if (response.status !== 204) {
      try {
        data = await response.json();
      } catch {
        data = null;
      }
    }
    if (response.ok) return data;
    const isProblem = (response.headers.get("Content-Type") || "").startsWith("application/problem+json");
    const fallback = STATUS_TEXT[response.status] || `The request failed (HTTP ${response.status}).`;
    let message = fallback;
    if (isProblem && data && typeof data === "object") {
      message = typeof data.detail === "string" && data.detail ? data.detail : String(data.title || fallback);
    }
    throw new ApiError(response.status, message, {
      retryAfter: response.status === 429 || response.status === 503 ? retryAfterSeconds(response) : null,
      fromGateway: !isProblem,
    });
  }

  // A request with the access token. A token the authorizer refuses (API Gateway's own 401/403, e.g. after the tab
  // slept past its expiry) is refreshed once and the request sent again; the body is built at send time so that a
  // request carrying the refresh token (logout) carries the current one.
  async function authed(method, path, makeBody, headers = {}) {
    for (let attempt = 0; ; attempt += 1) {
      if (!session) throw new ApiError(401, "You are logged out.");
      if (Date.now() >= session.expiresAt - 5_000) await refreshTokens();
      const current = session;
      try {
        return await request(method, path, { body: makeBody ? makeBody() : undefined, token: current.accessToken, headers });
      } catch (error) {
        const refused = error.fromGateway && (error.status === 401 || error.status === 403);
        if (attempt > 0 || !refused || session !== current) throw error;
        await refreshTokens();
      }
    }
  }

  function newId() {
    if (crypto.randomUUID) return crypto.randomUUID();
    const bytes = crypto.getRandomValues(new Uint8Array(16)); // randomUUID needs a secure context
    return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
  }

  // --- Session and tokens ----------------------------------------------------------------------------------------

  function adoptTokens(tokens) {
    const lifetimeMs = Math.max(30, Number(tokens.expires_in) || 600) * 1000;
    const now = Date.now();
    session.accessToken = tokens.access_token;
    session.refreshToken = tokens.refresh_token;
    session.issuedAt = now;
    session.expiresAt = now + lifetimeMs;
    session.refreshDueAt = now + lifetimeMs * REFRESH_AT_FRACTION;
    scheduleRefresh(session.refreshDueAt - now);
  }

  function scheduleRefresh(delayMs) {
    clearTimeout(timers.refresh);
    timers.refresh = setTimeout(() => refreshTokens().catch(() => {}), Math.max(0, delayMs));
  }

  function refreshTokens() {
    if (!refreshing) {
      refreshing = rotateTokens().finally(() => {
        refreshing = null;
      });
    }
    return refreshing;
  }

  async function rotateTokens() {
    const current = session;
    if (!current) throw new ApiError(401, "You are logged out.");
    try {
      const tokens = await request("POST", "/v1/token/refresh", { body: { refresh_token: current.refreshToken } });
      if (session === current) adoptTokens(tokens);
    } catch (error) {
      if (session !== current) throw error;
      if (error.status === 400 || error.status === 401 || error.status === 403) {
        endSession("Your session has ended. Please log in again.");
      } else {
        // Offline, throttled or a server hiccup: keep the session and try again soon.
        scheduleRefresh(error.retryAfter ? error.retryAfter * 1000 : REFRESH_RETRY_MS);
      }
      throw error;
    }
  }

  function startSession(tokens, label) {
    session = { userId: String(tokens.user_id), label };
    adoptTokens(tokens);
    ui.loginForm.reset();
    showGame();
    renderBoard(); // your row, marked as yours
    requestStanding();
    syncSubscriptions(); // your own channel for the board shown
  }

  function endSession(message) {
    session = null;
    syncSubscriptions(); // your channel goes; the board stays
    board.rankSeq = -Infinity;
    for (const name of Object.keys(timers)) {
      clearTimeout(timers[name]);
      timers[name] = 0;
    }
    clearTimeout(standing.timer);
    standing.timer = 0;
    standing.again = null;
    sessionStorage.removeItem(SESSION_KEY);
    ui.neighbours.replaceChildren();
    renderBoard();
    showAuth(message);
  }

  async function logOut() {
    ui.logout.disabled = true;
    try {
      await authed("POST", "/v1/logout", () => ({ refresh_token: session.refreshToken }));
    } catch {
      // Logged out here whatever the server said; an unrevoked session expires on its own.
    } finally {
      ui.logout.disabled = false;
      endSession("");
    }
  }

  function keepSessionForReload() {
    if (session) sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
  }

  function takeStoredSession() {
    const text = sessionStorage.getItem(SESSION_KEY);
    sessionStorage.removeItem(SESSION_KEY);
    if (!text) return null;
    try {
      const stored = JSON.parse(text);
      const complete = stored && stored.accessToken && stored.refreshToken && stored.userId && stored.expiresAt;
      return complete ? stored : null;
    } catch {
      return null;
    }
  }

  async function resumeSession(stored) {
    session = stored;
    showGame();
    try {
      if (Date.now() >= session.refreshDueAt) await refreshTokens();
      else scheduleRefresh(session.refreshDueAt - Date.now());
    } catch {
      if (!session) return; // the refresh token was refused: back at the login form
    }
    requestStanding();
    syncSubscriptions();
  }

  // --- The live connection (AppSync Events) ----------------------------------------------------------------------
  // One WebSocket for the page's whole life, opened as `anonymous`: anyone may watch the shown board's channel. Once
  // logged in, the player's own channel for that board is subscribed on it with their access token; switching boards
  // swaps both on the same connection. Every subscription is renewed every 5 minutes (with the current token): the
  // board counts its audience and its watchers that way.

  function setConnection(state, seconds) {
    ui.connection.dataset.state = state;
    const text = {
      connecting: "connecting…",
      live: "live",
      reconnecting: `reconnecting in ${plural(seconds || 0, "second")}`,
      offline: "offline",
    }[state];
    if (state === "reconnecting") ui.connection.dataset.seconds = String(seconds || 0);
    else delete ui.connection.dataset.seconds;
    ui.connectionText.textContent = text;
  }

  function base64Url(text) {
    let binary = "";
    for (const byte of new TextEncoder().encode(text)) binary += String.fromCharCode(byte);
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  // The authorization AppSync takes with a connection or a subscription: the API's HTTP host and our value.
  function authorization(value) {
    return { host: config.liveHost, Authorization: value };
  }

  const boardChannel = () => `/boards/${board.id}`;
  // `/players/<id>/global` is refused: the default board's rank messages come on the player's channel itself.
  function ownChannel() {
    if (!session) return null;
    const base = `/players/${session.userId}`;
    return board.id === DEFAULT_BOARD ? base : `${base}/${board.id}`;
  }
  const wantedChannels = () => [boardChannel(), ownChannel()].filter(Boolean);

  function connect() {
    clearTimeout(liveTimers.reconnect);
    liveTimers.reconnect = 0;
    clearInterval(liveTimers.countdown);
    if (!navigator.onLine || !config.liveHost) {
      setConnection("offline");
      return;
    }
    setConnection("connecting");
    dropSocket(); // never two connections at once
    let socket;
    try {
      const header = `header-${base64Url(JSON.stringify(authorization(ANONYMOUS)))}`;
      socket = new WebSocket(config.liveUrl, ["aws-appsync-event-ws", header]);
    } catch {
      setConnection("offline");
      return;
    }
    live.socket = socket;
    socket.onopen = () => {
      if (socket !== live.socket) return;
      live.openedAt = Date.now();
      send({ type: "connection_init" });
    };
    socket.onmessage = (event) => {
      if (socket === live.socket) handleFrame(event.data);
    };
    socket.onerror = () => {}; // a close event follows, and that is where reconnecting starts
    socket.onclose = () => {
      if (socket !== live.socket) return;
      const stable = live.acked && Date.now() - live.openedAt >= STABLE_CONNECTION_MS;
      forgetSocket();
      if (stable) live.attempt = 0;
      scheduleReconnect();
    };
  }

  function send(message) {
    if (live.socket && live.socket.readyState === WebSocket.OPEN) live.socket.send(JSON.stringify(message));
  }

  // A JSON object from the live feed, or null for anything else.
  function parseObject(text) {
    try {
      const value = JSON.parse(text);
      return value && typeof value === "object" ? value : null;
    } catch {
      return null;
    }
  }

  function handleFrame(text) {
    const frame = parseObject(text);
    if (!frame) return;
    if (frame.type === "connection_ack") onConnected(frame);
    else if (frame.type === "ka") watchConnection();
    else if (frame.type === "data") onData(frame);
    else if (frame.type === "subscribe_success") onSubscribed(frame.id);
    else if (frame.type === "subscribe_error") onSubscribeRefused(frame.id, frame.errors);
    else if (frame.type === "connection_error" && live.socket) live.socket.close(); // and reconnect, backing off
  }

  function onConnected(frame) {
    live.acked = true;
    const timeout = Number(frame.connectionTimeoutMs ?? (frame.payload && frame.payload.connectionTimeoutMs));
    live.timeoutMs = timeout > 0 ? timeout : DEFAULT_CONNECTION_TIMEOUT_MS;
    setConnection("live");
    watchConnection();
    syncSubscriptions();
    if (!boards.loaded) loadBoards(); // the first attempt failed: the API is likely back with the connection
    loadBoardOverHttp(); // what was published while the page was not connected is not sent again
    clearInterval(liveTimers.renew);
    liveTimers.renew = setInterval(renewSubscriptions, RENEW_SUBSCRIPTIONS_MS);
  }

  // AppSync sends "ka" every minute; none for connectionTimeoutMs means the connection is gone.
  function watchConnection() {
    clearTimeout(liveTimers.watchdog);
    liveTimers.watchdog = setTimeout(() => live.socket && live.socket.close(), live.timeoutMs);
  }

  // A subscription replacing another on the same channel (a renewal) takes over once it is confirmed. Your own
  // channel is authorized with your access token, the board's as `anonymous`.
  function subscribe(channel) {
    if (!live.acked) return;
    const id = newId();
    const value = channel === ownChannel() ? session.accessToken : ANONYMOUS;
    live.pending.set(id, { channel, replaces: live.subscriptions.get(channel) || null });
    send({ type: "subscribe", id, channel, authorization: authorization(value) });
  }

  // The subscriptions follow what the page shows: what it no longer shows (another board, a player who logged out) is
  // unsubscribed, what it shows and has not asked for yet is subscribed.
  function syncSubscriptions() {
    if (!live.acked) return;
    const wanted = wantedChannels();
    for (const [channel, id] of live.subscriptions) {
      if (wanted.includes(channel)) continue;
      live.subscriptions.delete(channel);
      unsubscribe(id);
    }
    const asked = new Set(Array.from(live.pending.values(), (request) => request.channel));
    for (const channel of wanted) if (!live.subscriptions.has(channel) && !asked.has(channel)) subscribe(channel);
  }

  function unsubscribe(id) {
    send({ type: "unsubscribe", id });
  }

  function onSubscribed(id) {
    const request = live.pending.get(id);
    if (!request) return;
    live.pending.delete(id);
    if (!wantedChannels().includes(request.channel)) {
      unsubscribe(id); // switched boards or logged out meanwhile (what it replaced went then)
      return;
    }
    if (request.replaces) unsubscribe(request.replaces);
    live.subscriptions.set(request.channel, id);
  }

  function onSubscribeRefused(id, errors) {
    const request = live.pending.get(id);
    if (!request) return;
    live.pending.delete(id);
    const refused = Array.isArray(errors) && errors.some((error) => error && error.errorType === "UnauthorizedException");
    clearTimeout(liveTimers.retry);
    liveTimers.retry = setTimeout(async () => {
      if (refused && request.channel === ownChannel()) await refreshTokens().catch(() => {}); // expired on the way
      // A refused renewal leaves the old subscription in place: renew it again; a refused first one is missing.
      const renewal = request.replaces && live.subscriptions.get(request.channel) === request.replaces;
      if (renewal && wantedChannels().includes(request.channel)) subscribe(request.channel);
      syncSubscriptions();
    }, SUBSCRIBE_RETRY_MS);
  }

  function onData(frame) {
    if (![...live.subscriptions.values()].includes(frame.id) && !live.pending.has(frame.id)) return;
    // One event per frame, as a JSON string (some clients have seen an array of them: take both).
    for (const event of Array.isArray(frame.event) ? frame.event : [frame.event]) {
      if (typeof event === "string") handleMessage(event);
    }
  }

  // Every 5 minutes, and when a new season starts (a subscription of your own channel registers you as a watcher of
  // the board's current season, and the board counts its audience per season).
  async function renewSubscriptions() {
    if (!live.acked) return;
    if (session && Date.now() >= session.expiresAt - 30_000) await refreshTokens().catch(() => {});
    for (const channel of wantedChannels()) if (live.subscriptions.has(channel)) subscribe(channel);
    syncSubscriptions(); // and whatever is still missing
  }

  // Exponential backoff with "equal jitter": between half and all of min(cap, base * 2^attempt).
  function backoffDelayMs(attempt) {
    const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** attempt);
    return ceiling / 2 + Math.random() * (ceiling / 2);
  }

  function scheduleReconnect() {
    if (!navigator.onLine) {
      setConnection("offline");
      return;
    }
    const dueAt = Date.now() + backoffDelayMs(live.attempt);
    live.attempt += 1;
    const showCountdown = () => setConnection("reconnecting", Math.max(1, Math.ceil((dueAt - Date.now()) / 1000)));
    showCountdown();
    clearInterval(liveTimers.countdown);
    liveTimers.countdown = setInterval(showCountdown, 1000);
    clearTimeout(liveTimers.reconnect);
    liveTimers.reconnect = setTimeout(() => {
      liveTimers.reconnect = 0;
      clearInterval(liveTimers.countdown);
      if (!live.socket) connect(); // unless the network's return connected meanwhile
    }, dueAt - Date.now());
  }

  // The connection is over: its subscriptions and timers go with it.
  function forgetSocket() {
    live.socket = null;
    live.acked = false;
    live.subscriptions.clear();
    live.pending.clear();
    for (const name of ["watchdog", "renew", "retry"]) {
      clearTimeout(liveTimers[name]); // one id space for timeouts and intervals
      liveTimers[name] = 0;
    }
  }

  // Close the current connection, if any, without the reconnect its close event would start.
  function dropSocket() {
    const socket = live.socket;
    forgetSocket();
    if (socket) {
      socket.onclose = null;
      socket.close(1000);
    }
  }

  function goneOffline() {
    clearTimeout(liveTimers.reconnect);
    liveTimers.reconnect = 0;
    clearInterval(liveTimers.countdown);
    dropSocket();
    setConnection("offline");
  }

  function backOnline() {
    if (live.socket) return;
    live.attempt = 0;
    connect();
  }

  // `seq` orders the messages of one board's season only: a message of another board, or of another season than the
  // one on screen (the last one's, late; the next one's, early), is dropped. After a reset the page shows the new
  // season, whose messages then count from their own seq.
  function handleMessage(text) {
    const message = parseObject(text);
    if (!message || message.board !== board.id || message.season !== board.season) return;
    if (message.type === "top10" && Array.isArray(message.items)) {
      if (typeof message.seq === "number") {
        if (message.seq <= board.seq) return; // an older board than the one on screen
        board.seq = message.seq;
        ui.top10.dataset.seq = String(message.seq);
      }
      applyBoard(message.items);
    } else if (message.type === "rank" && session && message.user_id === session.userId) {
      if (typeof message.seq === "number") {
        if (message.seq <= board.rankSeq) return;
        board.rankSeq = message.seq;
      }
      applyRank(message);
    }
  }

  // --- Boards and seasons ----------------------------------------------------------------------------------------
  // GET /v1/boards lists the boards and each one's current season; the switcher is built from it. The season shown
  // counts down to its end (the board's next reset); then the page asks the API again and shows the new season.

  const BOARD_ID = /^[a-z0-9][a-z0-9-]{0,31}$/; // the API's board ids: safe in a path, a channel and an element id

  function newBoardState(definition) {
    return { ...definition, seq: -Infinity, rankSeq: -Infinity, items: null, byUser: new Map(), marks: new Map() };
  }

  function cleanBoard(entry) {
    if (!entry || typeof entry !== "object" || typeof entry.id !== "string" || !BOARD_ID.test(entry.id)) return null;
    if (typeof entry.season !== "string" || !entry.season) return null;
    const endsAt = entry.ends_at == null ? null : Date.parse(entry.ends_at);
    if (Number.isNaN(endsAt)) return null;
    const title = typeof entry.title === "string" && entry.title ? entry.title : entry.id;
    return { id: entry.id, title, season: entry.season, endsAt };
  }

  // One request in flight at a time. On failure the page keeps the boards it has; the next connection, or the next
  // tick of an ended season, asks again.
  function loadBoards() {
    if (!boards.loading) {
      boards.recheckAt = Date.now() + SEASON_RECHECK_MS;
      boards.loading = fetchBoards().finally(() => {
        boards.loading = null;
      });
    }
    return boards.loading;
  }

  async function fetchBoards() {
    let answer;
    try {
      answer = await request("GET", "/v1/boards");
    } catch {
      return;
    }
    const list = Array.isArray(answer) ? answer.map(cleanBoard).filter(Boolean) : [];
    if (!list.length) return;
    boards.list = list;
    boards.loaded = true;
    const shown = list.find((definition) => definition.id === board.id) || list[0];
    if (shown.id === board.id && shown.season === board.season) {
      Object.assign(board, shown); // the same season: only its title and end may be new to the page
      renderSwitcher();
      renderSeason();
    } else showBoard(shown); // a new season of the board shown (or the board is gone)
  }

  // Shows a board's current season: a board picked in the switcher, or the next season of the board shown once its
  // season is over. Either way it starts afresh (seq, marks) and from HTTP; the live feed follows: another board's
  // channels replace the old ones, and a new season of the same board renews them, so that you watch the new season.
  function showBoard(definition) {
    const sameBoard = definition.id === board.id;
    board = newBoardState(definition);
    clearTimeout(boardTimers.marks);
    ui.top10.dataset.seq = "";
    ui.rankNotice.hidden = true; // about the board shown before
    clearStanding();
    renderSwitcher();
    renderSeason();
    renderBoard();
    if (sameBoard) renewSubscriptions();
    else syncSubscriptions();
    loadBoardOverHttp();
    requestStanding(0);
  }

  function switchBoard(id) {
    const definition = boards.list.find((candidate) => candidate.id === id);
    if (definition && id !== board.id) showBoard(definition);
  }

  // The switcher: a tab per board (the ARIA tabs pattern: one tab stop, the arrow keys, Home and End move within).
  function renderSwitcher() {
    const hadFocus = ui.tabs.contains(document.activeElement);
    const tabs = boards.list.map((definition) => {
      const tab = ui.tabTemplate.content.firstElementChild.cloneNode(true);
      const selected = definition.id === board.id;
      tab.id = `tab-${definition.id}`;
      tab.dataset.board = definition.id;
      tab.textContent = definition.title;
      tab.setAttribute("aria-selected", String(selected));
      tab.tabIndex = selected ? 0 : -1;
      return tab;
    });
    ui.tabs.replaceChildren(...tabs);
    ui.panel.setAttribute("aria-labelledby", `tab-${board.id}`);
    if (hadFocus) byId(`tab-${board.id}`)?.focus(); // the tabs were rebuilt under the keyboard
  }

  function onTabClick(event) {
    const tab = event.target.closest("[role=tab]");
    if (tab) switchBoard(tab.dataset.board);
  }

  function onTabKey(event) {
    const tabs = Array.from(ui.tabs.children);
    const at = tabs.indexOf(event.target);
    const next = { ArrowRight: at + 1, ArrowLeft: at - 1, Home: 0, End: tabs.length - 1 }[event.key];
    if (at < 0 || next === undefined) return;
    event.preventDefault();
    switchBoard(tabs[(next + tabs.length) % tabs.length].dataset.board);
  }

  function renderSeason() {
    const allTime = board.season === ALL_TIME;
    ui.panel.dataset.board = board.id;
    ui.season.dataset.season = board.season;
    ui.season.textContent = allTime ? "All time" : `Season ${board.season}`;
    ui.meBoard.textContent = board.title;
    ui.meNoScore.textContent = allTime ? "No score yet — play a match!" : "No score yet this season — play a match!";
    ui.top10Empty.textContent = allTime ? "Nobody has scored yet." : "Nobody has scored yet this season.";
    tickCountdown();
  }

  // Every second, for the page's life (and at once when a hidden tab comes back). A board that never resets has no
  // countdown. At zero the season is over by our clock: the API is asked for the boards until it shows the next
  // season (our clock may run ahead of the server's), at most every SEASON_RECHECK_MS.
  function tickCountdown() {
    ui.countdown.hidden = board.endsAt === null;
    if (board.endsAt === null) return;
    const left = Math.max(0, Math.ceil((board.endsAt - Date.now()) / 1000));
    ui.countdown.dataset.seconds = String(left);
    if (left > 0) {
      ui.countdown.textContent = `resets in ${formatDuration(left)}`;
      return;
    }
    ui.countdown.textContent = "new season starting…";
    if (boards.spreadFor !== board.endsAt) {
      boards.spreadFor = board.endsAt; // once per reset: this page's moment to ask
      boards.recheckAt = Math.max(boards.recheckAt, board.endsAt + Math.random() * config.resetSpreadMs);
    }
    if (Date.now() >= boards.recheckAt) loadBoards();
  }

  // 2d 03:04:05, or 03:04:05 under a day.
  function formatDuration(seconds) {
    const days = Math.floor(seconds / 86_400);
    const clock = [Math.floor(seconds / 3600) % 24, Math.floor(seconds / 60) % 60, seconds % 60]
      .map((part) => String(part).padStart(2, "0"))
      .join(":");
    return days ? `${days}d ${clock}` : clock;
  }

  // --- The board -------------------------------------------------------------------------------------------------

  function cleanEntry(entry) {
    if (!entry || typeof entry !== "object") return null;
    const rank = Number(entry.rank);
    const score = Number(entry.score);
    if (!Number.isInteger(rank) || !Number.isFinite(score) || entry.user_id == null) return null;
    return { user_id: String(entry.user_id), user_name: String(entry.user_name ?? ""), rank, score };
  }

  // The board over HTTP: when a board or season is shown, so the page is useful before (or without) the live feed,
  // and after every (re)connection, since what was published meanwhile is not sent again. The season is named, so
  // the answer is the one on screen; it is dropped if the page moved to another board or season meanwhile, or if a
  // push (newer) came first.
  async function loadBoardOverHttp() {
    const shown = board;
    const seqBefore = shown.seq;
    const query = new URLSearchParams({ season: shown.season, limit: String(TOP_SIZE) });
    try {
      const page = await request("GET", `/v1/boards/${encodeURIComponent(shown.id)}/scores?${query}`);
      if (board === shown && shown.seq === seqBefore && page && Array.isArray(page.items)) applyBoard(page.items);
    } catch {
      // the next push brings the board as well
    }
  }

  function applyBoard(rawItems) {
    const items = rawItems.map(cleanEntry).filter(Boolean).sort((a, b) => a.rank - b.rank);
    const previous = board.items;
    const now = Date.now();
    let changed = previous === null || previous.length !== items.length;
    let headline = "";
    for (const item of items) {
      const before = board.byUser.get(item.user_id);
      if (!before || before.rank !== item.rank || before.score !== item.score) changed = true;
      if (previous === null) continue; // the first board on screen: nothing "moved"
      let mark = null;
      if (!before) mark = { kind: "new", symbol: "new", spoken: "new on the board" };
      else if (item.rank < before.rank) {
        const places = before.rank - item.rank;
        mark = { kind: "up", symbol: `▲${places}`, spoken: `up ${plural(places, "place")}` };
      } else if (item.rank > before.rank) {
        const places = item.rank - before.rank;
        mark = { kind: "down", symbol: `▼${places}`, spoken: `down ${plural(places, "place")}` };
      } else if (item.score !== before.score) {
        const gained = item.score - before.score;
        mark = { kind: "score", symbol: `${gained > 0 ? "+" : ""}${gained.toLocaleString()}`, spoken: "new score" };
      }
      if (mark) {
        board.marks.set(item.user_id, { ...mark, until: now + CHANGE_MARK_MS, fresh: true });
        if (!headline && (mark.kind === "new" || mark.kind === "up")) {
          headline = `${item.user_name} is now number ${item.rank}.`;
        }
      }
    }
    board.items = items;
    board.byUser = new Map(items.map((item) => [item.user_id, item]));
    renderBoard();
    if (!changed) return;
    announce(headline);
    const mine = session && board.byUser.get(session.userId);
    if (mine) showRankAndScore(mine.rank, mine.score);
    const mineBefore = previous && session && previous.find((item) => item.user_id === session.userId);
    const mineMoved = mine ? !mineBefore || mineBefore.rank !== mine.rank || mineBefore.score !== mine.score : mineBefore;
    requestStanding(mineMoved ? STANDING_MIN_INTERVAL_MS : STANDING_ON_BOARD_CHANGE_MS);
  }

  function announce(headline) {
    const now = Date.now();
    if (now - lastAnnouncedAt < ANNOUNCE_MIN_INTERVAL_MS) return;
    lastAnnouncedAt = now;
    ui.boardStatus.textContent = `Top 10 updated. ${headline}`.trim();
  }

  function renderBoard() {
    ui.panel.setAttribute("aria-busy", String(board.items === null));
    if (board.items === null) {
      ui.top10.replaceChildren(); // a board just switched to: nothing of the last one stays while it loads
      ui.top10Empty.hidden = true;
      return;
    }
    const now = Date.now();
    for (const [userId, mark] of board.marks) if (mark.until <= now) board.marks.delete(userId);
    renderRows(ui.top10, board.items, "top10-row", board.marks);
    ui.top10Empty.hidden = board.items.length > 0;
    for (const mark of board.marks.values()) mark.fresh = false; // animate once, keep the arrow a while
    clearTimeout(boardTimers.marks);
    if (board.marks.size) {
      const next = Math.min(...Array.from(board.marks.values(), (mark) => mark.until));
      boardTimers.marks = setTimeout(renderBoard, Math.max(50, next - now));
    }
  }

  function renderRows(list, items, testId, marks) {
    const rows = items.map((item) => {
      const row = ui.rowTemplate.content.firstElementChild.cloneNode(true);
      row.dataset.testid = testId;
      row.dataset.userId = item.user_id;
      row.dataset.rank = String(item.rank);
      row.dataset.score = String(item.score);
      row.querySelector(".row__rank").textContent = `#${item.rank}`;
      row.querySelector(".row__name").textContent = item.user_name;
      row.querySelector(".row__score").textContent = item.score.toLocaleString();
      if (session && item.user_id === session.userId) {
        row.classList.add("row--me");
        row.dataset.me = "true";
        row.setAttribute("aria-current", "true");
      }
      const mark = marks && marks.get(item.user_id);
      const change = row.querySelector(".row__change");
      if (mark) {
        row.dataset.change = mark.kind;
        row.classList.add(`row--${mark.kind}`);
        if (mark.fresh) row.classList.add("row--flash");
        change.textContent = mark.symbol;
        const spoken = document.createElement("span");
        spoken.className = "visually-hidden";
        spoken.textContent = ` (${mark.spoken})`;
        row.querySelector(".row__name").append(spoken);
      }
      return row;
    });
    list.replaceChildren(...rows);
  }

  // --- Your standing ---------------------------------------------------------------------------------------------

  function showRankAndScore(rank, score) {
    ui.meRank.textContent = `#${rank}`;
    ui.meRank.dataset.rank = String(rank);
    ui.meScore.textContent = Number(score).toLocaleString();
    ui.meScore.dataset.score = String(score);
    ui.meNoScore.hidden = true;
  }

  // Nothing known yet of your standing on the board shown (you just logged in, or switched boards).
  function clearStanding() {
    ui.meRank.textContent = "–";
    ui.meScore.textContent = "–";
    delete ui.meRank.dataset.rank;
    delete ui.meScore.dataset.score;
    ui.meNoScore.hidden = true;
    ui.neighbours.replaceChildren();
  }

  function showNoScore() {
    clearStanding();
    ui.meNoScore.hidden = false;
  }

  // Coalesced: one request in flight, and at most one per `interval`. Your own changes (a rank message, your row on
  // the board) ask within a second; any other board change within 5 s, as it only moves your neighbours: with many
  // players watching, every board push must not become a request from each of them.
  function requestStanding(interval = STANDING_MIN_INTERVAL_MS) {
    if (!session) return;
    if (standing.inFlight) {
      standing.again = standing.again === null ? interval : Math.min(standing.again, interval);
      return;
    }
    const dueAt = standing.lastAt + interval;
    if (dueAt > Date.now()) {
      if (!standing.timer || dueAt < standing.dueAt) {
        clearTimeout(standing.timer);
        standing.dueAt = dueAt;
        standing.timer = setTimeout(() => {
          standing.timer = 0;
          requestStanding(0);
        }, dueAt - Date.now());
      }
      return;
    }
    clearTimeout(standing.timer);
    standing.timer = 0;
    standing.inFlight = true;
    standing.lastAt = Date.now();
    fetchStanding().finally(() => {
      standing.inFlight = false;
      const again = standing.again;
      standing.again = null;
      if (again !== null) requestStanding(again);
    });
  }

  // On the season shown; an answer for a board or season no longer shown, or a player no longer logged in, is dropped.
  async function fetchStanding() {
    const current = session;
    const shown = board;
    const query = new URLSearchParams({ season: shown.season });
    const path = `/v1/boards/${encodeURIComponent(shown.id)}/scores/${encodeURIComponent(current.userId)}?${query}`;
    try {
      const mine = await request("GET", path);
      if (session !== current || board !== shown || !mine) return;
      const entry = cleanEntry(mine);
      if (!entry) return;
      ui.meName.textContent = entry.user_name || current.label;
      showRankAndScore(entry.rank, entry.score);
      const around = Array.isArray(mine.around) ? mine.around.map(cleanEntry).filter(Boolean) : [];
      renderRows(ui.neighbours, around.sort((a, b) => a.rank - b.rank), "neighbour-row", null);
    } catch (error) {
      if (session === current && board === shown && error.status === 404) showNoScore(); // none yet this season
      // Other failures keep what is on screen; the next change asks again.
    }
  }

  function applyRank(message) {
    const rank = Number(message.rank);
    if (!Number.isInteger(rank)) return;
    const previous = Number.isInteger(message.previous_rank) ? message.previous_rank : null;
    if (Number.isFinite(Number(message.score))) showRankAndScore(rank, Number(message.score));
    requestStanding();
    if (previous === rank) return; // a new score, the same place: no notice
    let kind = "entered";
    let text = `You are on the board at number ${rank}.`;
    if (previous !== null && rank > previous) {
      kind = "passed";
      text = `Someone passed you! You are now number ${rank} (was ${previous}).`;
    } else if (previous !== null && rank < previous) {
      kind = "up";
      text = `You moved up to number ${rank} (was ${previous}).`;
    }
    showNotice(kind, text);
  }

  function showNotice(kind, text) {
    ui.rankNotice.dataset.kind = kind;
    ui.rankNotice.textContent = text;
    ui.rankNotice.hidden = false;
    clearTimeout(timers.notice);
    timers.notice = setTimeout(() => {
      ui.rankNotice.hidden = true;
    }, NOTICE_MS);
  }

  // --- Play a match ----------------------------------------------------------------------------------------------

  async function playMatch() {
    ui.play.disabled = true;
    ui.playResult.dataset.state = "playing";
    ui.playResult.textContent = "Playing…";
    let wait = 0;
    try {
      const action = await authed("POST", "/v1/actions", () => ({ type: "match" }));
      // A match lasts at least the game's minimum duration: scored sooner, it would be refused (422).
      const playing = Date.parse(action.scorable_at) - Date.now();
      if (playing > 0) await new Promise((resolve) => setTimeout(resolve, playing));
      const maxScore = Number.isInteger(action.max_score) && action.max_score > 0 ? action.max_score : 1000;
      const score = 1 + Math.floor(Math.random() * maxScore);
      const key = newId(); // the same key on a retry: the score counts once
      const post = () =>
        authed(
          "POST",
          "/v1/scores",
          () => ({ user_id: session.userId, score, action_id: action.action_id }),
          { "Idempotency-Key": key },
        );
      try {
        await post();
      } catch (error) {
        if (error.status !== 0) throw error;
        await new Promise((resolve) => setTimeout(resolve, 1000));
        await post();
      }
      ui.playResult.dataset.state = "scored";
      ui.playResult.dataset.score = String(score);
      ui.playResult.textContent = `You scored ${score.toLocaleString()} of ${maxScore.toLocaleString()}! The board updates in a moment.`;
    } catch (error) {
      if (!session) return;
      ui.playResult.dataset.state = "error";
      ui.playResult.textContent = error.describe ? error.describe() : String(error);
      wait = error.retryAfter || 0;
    } finally {
      if (wait) {
        clearTimeout(timers.retryAfter);
        timers.retryAfter = setTimeout(() => {
          ui.play.disabled = false;
        }, wait * 1000);
      } else ui.play.disabled = false;
    }
  }

  // --- Forms and views -------------------------------------------------------------------------------------------

  function showAuth(message) {
    ui.game.hidden = true;
    ui.auth.hidden = false;
    showProblem(message);
    ui.loginForm.querySelector("input[name=password]").value = "";
  }

  function showGame() {
    ui.auth.hidden = true;
    ui.game.hidden = false;
    showProblem("");
    ui.meName.textContent = session.label || "";
    ui.rankNotice.hidden = true;
    ui.playResult.textContent = "";
    delete ui.playResult.dataset.state;
    clearStanding();
  }

  function showProblem(message) {
    ui.authProblem.textContent = message || "";
    ui.authProblem.hidden = !message;
  }

  function switchForm(showRegister) {
    ui.registerForm.hidden = !showRegister;
    ui.loginForm.hidden = showRegister;
    byId("auth-title").textContent = showRegister ? "Create an account" : "Log in to play";
    showProblem("");
    (showRegister ? ui.registerForm : ui.loginForm).querySelector("input").focus();
  }

  function fieldValue(form, name) {
    return form.querySelector(`[name=${name}]`).value;
  }

  // Runs a form's request with its submit button disabled; a 429 keeps the button disabled for Retry-After.
  async function submitting(form, work) {
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    let wait = 0;
    try {
      showProblem("");
      await work();
    } catch (error) {
      showProblem(error.describe ? error.describe() : "Something went wrong. Try again.");
      wait = error.retryAfter || 0;
    } finally {
      if (wait) setTimeout(() => (button.disabled = false), wait * 1000);
      else button.disabled = false;
    }
  }

  // A login sends the device token this browser kept from the account's last login and keeps the new one. It is not
  // a credential (it cannot log in), so it may live in localStorage: it only tells the API that this browser logged
  // in to the account before, which spares it the account-wide limit on failed logins that an attack elsewhere may
  // have used up.
  async function logIn(username, password, label) {
    const body = { username, password };
    const deviceToken = storedDeviceToken(username);
    if (deviceToken) body.device_token = deviceToken;
    const tokens = await request("POST", "/v1/login", { body });
    keepDeviceToken(username, tokens.device_token);
    // "You:" shows the name the boards show (the token's `name` claim), never the login username.
    startSession(tokens, label || nameInToken(tokens.access_token));
  }

  function nameInToken(accessToken) {
    try {
      const segment = accessToken.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      const padded = segment.padEnd(Math.ceil(segment.length / 4) * 4, "=");
      const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
      return String(JSON.parse(new TextDecoder().decode(bytes)).name || "");
    } catch {
      return ""; // the standing, once it arrives, names the player
    }
  }

  function storedDeviceToken(username) {
    try {
      return localStorage.getItem(DEVICE_KEY_PREFIX + username.toLowerCase());
    } catch {
      return null; // storage disabled: the login goes on as from a new browser
    }
  }

  function keepDeviceToken(username, token) {
    if (typeof token !== "string") return;
    try {
      localStorage.setItem(DEVICE_KEY_PREFIX + username.toLowerCase(), token);
    } catch {
      // storage disabled or full: nothing kept, nothing lost
    }
  }

  function onLogin(event) {
    event.preventDefault();
    const form = ui.loginForm;
    const username = fieldValue(form, "username").trim();
    const password = fieldValue(form, "password");
    if (!username || !password) {
      showProblem("Enter your username and password.");
      return;
    }
    submitting(form, () => logIn(username, password));
  }

  function onRegister(event) {
    event.preventDefault();
    const form = ui.registerForm;
    const username = fieldValue(form, "username").trim();
    const password = fieldValue(form, "password");
    const displayName = fieldValue(form, "display_name").trim();
    if (!username || !password) {
      showProblem("Choose a username and a password.");
      return;
    }
    const body = { username, password };
    if (displayName) body.display_name = displayName;
    submitting(form, async () => {
      const user = await request("POST", "/v1/users", { body });
      form.reset();
      switchForm(false);
      await logIn(username, password, user && user.display_name);
    });
  }

  // --- Start -----------------------------------------------------------------------------------------------------

  function wireEvents() {
    ui.loginForm.addEventListener("submit", onLogin);
    ui.registerForm.addEventListener("submit", onRegister);
    byId("show-register").addEventListener("click", () => switchForm(true));
    byId("show-login").addEventListener("click", () => switchForm(false));
    ui.play.addEventListener("click", playMatch);
    ui.tabs.addEventListener("click", onTabClick);
    ui.tabs.addEventListener("keydown", onTabKey);
    ui.logout.addEventListener("click", logOut);
    window.addEventListener("offline", goneOffline);
    window.addEventListener("online", backOnline);
    window.addEventListener("pagehide", keepSessionForReload);
    window.addEventListener("pageshow", (event) => {
      if (event.persisted) sessionStorage.removeItem(SESSION_KEY); // back from the back/forward cache
    });
    // Timers of a hidden tab are throttled: catch up when the player comes back.
    document.addEventListener("visibilitychange", () => {
      if (document.hidden) return;
      tickCountdown(); // a season may have ended meanwhile
      if (session && Date.now() >= session.refreshDueAt) refreshTokens().catch(() => {});
      if (!live.socket && navigator.onLine && !liveTimers.reconnect) connect();
    });
  }

  async function start() {
    const stored = takeStoredSession();
    config = await loadConfig();
    wireEvents();
    document.body.dataset.ready = "true";
    showBoard(FALLBACK_BOARD); // the default board, over HTTP, until the boards are known
    loadBoards();
    boardTimers.seasonTick = setInterval(tickCountdown, 1000);
    connect(); // the board is live for anyone, logged in or not
    if (stored) await resumeSession(stored);
    else showAuth("");
  }

  start();
})();
