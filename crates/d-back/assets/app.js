// The built-in live page: speaks the same WebSocket protocol as the d-zone
// client, and draws each user as a card in their role and status colours. No
// dependencies; user-provided text only ever goes through textContent.
//
// Passworded servers are joined with a Discord login (OAuth2 implicit grant):
// the page sends the browser to Discord, Discord sends it back here with an
// access token in the URL fragment, the page asks Discord whose token it is and
// presents both in `connect`, where d-back checks them with Discord again. The
// token stays in this tab's sessionStorage and leaves the address bar at once.
"use strict";

const $ = (id) => document.getElementById(id);
const CLIENT_URL = "https://nntin.github.io/d-zone/";
const DISCORD_AUTHORIZE = "https://discord.com/oauth2/authorize";
const DISCORD_ME = "https://discord.com/api/v10/users/@me";
const LOGIN_KEY = "d-back-login";       // sessionStorage: {token, user: {id, username}}
const PENDING_KEY = "d-back-oauth";     // sessionStorage: {nonce, server} while at Discord
const CHAT_LINES = 50;
const STATUSES = ["online", "idle", "dnd", "offline"];
const STATUS_NAMES = { online: "online", idle: "idle", dnd: "do not disturb", offline: "offline" };
const socketURL = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/";

const state = {
  servers: {},      // snowflake -> {id, name, passworded}
  current: null,    // public id echoed by server-join, or the one whose join failed
  snowflake: null,  // snowflake of the joined server; null while none is shown
  pending: null,    // public id of a connect not answered yet
  users: new Map(), // uid -> {uid, username, status, roleColor}
  login: readJSON(LOGIN_KEY), // the Discord login of this tab, if any
  socket: null,
  retry: 500,
};

function readJSON(key) {
  try {
    return JSON.parse(sessionStorage.getItem(key) || "null");
  } catch (_) {
    return null;
  }
}

// Browsers treat loopback as secure, so only another host over plain HTTP
// keeps the HTTPS d-zone client from opening this server's ws:// socket.
function isLoopback(hostname) {
  const host = hostname.replace(/^\[|\]$/g, "").toLowerCase();
  return host === "localhost" || host.endsWith(".localhost") || /^127\./.test(host) || host === "::1";
}

function explainPlainHTTP() {
  if (location.protocol !== "http:" || isLoopback(location.hostname)) return;
  $("client-note-host").textContent = location.host;
  $("client-note").hidden = false;
}

function safeColor(color) {
  return /^#[0-9a-f]{6}$/i.test(color || "") ? color : "#ffffff";
}

function renderServers() {
  const list = $("servers");
  list.replaceChildren();
  // The server shown, or the one whose join was refused.
  const chosen = state.snowflake || snowflakeOf(state.current);
  for (const [snowflake, server] of Object.entries(state.servers)) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = server.name;
    if (server.passworded) {
      const badge = document.createElement("small");
      badge.className = "badge";
      badge.textContent = "login required";
      button.append(" ", badge);
    }
    button.dataset.id = server.id;
    button.setAttribute("aria-pressed", String(snowflake === chosen));
    button.addEventListener("click", () => join(server.id));
    const item = document.createElement("li");
    item.append(button);
    list.append(item);
  }
}

function userItem(user) {
  const item = document.createElement("li");
  item.dataset.uid = user.uid;
  const dot = document.createElement("span");
  dot.className = "dot";
  dot.setAttribute("aria-hidden", "true");
  const name = document.createElement("span");
  name.className = "name";
  const status = document.createElement("span");
  status.className = "status";
  item.append(dot, name, status);
  updateItem(item, user);
  return item;
}

function updateItem(item, user) {
  const status = STATUSES.includes(user.status) ? user.status : "online";
  item.dataset.status = status;
  item.querySelector(".dot").style.background = safeColor(user.roleColor);
  item.querySelector(".dot").textContent = initial(user.username);
  item.querySelector(".name").textContent = user.username;
  item.querySelector(".status").textContent = STATUS_NAMES[status];
  item.title = user.username + " (" + STATUS_NAMES[status] + ")";
}

// The first letter of a name, as the card's badge (a whole grapheme, not half an emoji).
function initial(name) {
  const first = [...String(name || "?").trim()][0] || "?";
  return first.toUpperCase();
}

function renderUsers() {
  const list = $("users");
  list.replaceChildren(...[...state.users.values()].map(userItem));
  renderUserCount();
}

function renderUserCount() {
  const users = [...state.users.values()];
  const online = users.filter((u) => u.status !== "offline").length;
  $("user-count").textContent = state.snowflake ? state.users.size + " users, " + online + " online" : "";
  const summary = $("status-summary");
  summary.replaceChildren();
  if (!state.snowflake) return;
  for (const status of STATUSES) {
    const count = users.filter((u) => (STATUSES.includes(u.status) ? u.status : "online") === status).length;
    const item = document.createElement("li");
    item.dataset.status = status;
    item.textContent = count + " " + STATUS_NAMES[status];
    summary.append(item);
  }
}

// Forgets the shown server's users, so a failed join never leaves the last
// server's list standing as if it were the one asked for.
function clearUsers() {
  state.snowflake = null;
  state.users = new Map();
  $("chat").replaceChildren();
  renderUsers();
}

function itemFor(uid) {
  return $("users").querySelector('li[data-uid="' + CSS.escape(uid) + '"]');
}

function applyPresence(server, data) {
  if (server !== state.snowflake || !data || !data.uid) return;
  const known = state.users.get(data.uid);
  if (data.delete) {
    state.users.delete(data.uid);
    itemFor(data.uid)?.remove();
  } else if (known) {
    known.status = data.status || known.status;
    if (data.username) known.username = data.username;
    if (data.roleColor) known.roleColor = data.roleColor;
    const item = itemFor(data.uid);
    if (item) updateItem(item, known);
  } else if (data.username) {
    const user = { uid: data.uid, username: data.username, status: data.status || "online", roleColor: data.roleColor };
    state.users.set(user.uid, user);
    $("users").append(userItem(user));
  }
  renderUserCount();
}

function addChat(server, data) {
  if (server !== state.snowflake || !data) return;
  const user = state.users.get(data.uid);
  const line = document.createElement("li");
  const who = document.createElement("b");
  who.textContent = (user ? user.username : data.uid) + ": ";
  who.style.color = safeColor(user && user.roleColor);
  line.append(who, document.createTextNode(String(data.message ?? "")));
  const chat = $("chat");
  chat.append(line);
  while (chat.children.length > CHAT_LINES) chat.firstElementChild.remove();
  chat.scrollTop = chat.scrollHeight;
}

function updateClientLink() {
  let href = CLIENT_URL + "?socketURL=" + encodeURIComponent(socketURL);
  if (state.current && state.current !== "default") href += "&s=" + encodeURIComponent(state.current);
  $("open-client").href = href;
}

// server-join names the server by the id we asked for; the broadcasts name it by snowflake.
function snowflakeOf(id) {
  const entries = Object.entries(state.servers);
  const found = entries.find(([, s]) => s.id === id) || (id === "default" ? entries.find(([, s]) => s.default) : undefined);
  return found ? found[0] : null;
}

function serverById(id) {
  return Object.values(state.servers).find((s) => s.id === id);
}

function join(id) {
  $("problem").hidden = true;
  $("login").hidden = true;
  state.pending = id || "default";
  const data = { server: id };
  const server = serverById(id);
  if (server && server.passworded && state.login) {
    data.discordToken = state.login.token;
    data.discordUser = state.login.user;
  }
  send({ type: "connect", data });
}

// A join was refused: show why, clear the old list, and for a passworded
// server say how to get in.
function joinFailed(message) {
  const id = state.pending;
  state.pending = null;
  const server = serverById(id);
  state.current = server ? server.id : null;
  clearUsers();
  $("server-name").textContent = server ? server.name : "Users";
  renderServers();
  updateClientLink();
  showProblem(message);
  if (server && server.passworded) {
    if (message === "Discord authentication failed. Please try logging in again.") forgetLogin();
    offerLogin(server);
  }
}

function showProblem(message) {
  $("problem").textContent = message || "Something went wrong.";
  $("problem").hidden = false;
}

function forgetLogin() {
  state.login = null;
  sessionStorage.removeItem(LOGIN_KEY);
}

// Asks d-back which Discord application this server logs in with; without
// one there is no login to offer, and the page says who can change that.
async function offerLogin(server) {
  let clientId = null;
  try {
    const answer = await fetch("/api/login/" + encodeURIComponent(server.id));
    if (!answer.ok) throw new Error("HTTP " + answer.status);
    const settings = await answer.json();
    clientId = typeof settings.clientId === "string" && settings.clientId ? settings.clientId : null;
  } catch (error) {
    showLogin("The page could not ask d-back how to log in to " + server.name + " (" + error.message + "). Reload the page to try again.", null);
    return;
  }
  if (state.current !== server.id || state.snowflake) return; // moved on meanwhile
  if (clientId) {
    showLogin(server.name + " shows its members only to people who log in with Discord as one of them. " +
      "Discord tells d-back who you are; the page never sees your password.", authorizeURL(clientId, server.id));
  } else {
    showLogin("There is no way to log in to " + server.name + " from here: d-back has no Discord OAuth2 application id to log in with. " +
      "Whoever runs it can start it with --oauth-client-id set to the Application ID from the Discord developer portal, " +
      "and add this page's address, " + redirectURI() + ", to that application's OAuth2 redirects.", null);
  }
}

function showLogin(text, href) {
  $("login-text").textContent = text;
  const button = $("login-button");
  button.hidden = !href;
  if (href) button.href = href; else button.removeAttribute("href");
  $("login").hidden = false;
}

function redirectURI() {
  return location.origin + location.pathname;
}

function authorizeURL(clientId, serverId) {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  const nonce = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  sessionStorage.setItem(PENDING_KEY, JSON.stringify({ nonce, server: serverId }));
  const query = new URLSearchParams({
    client_id: clientId,
    response_type: "token",
    scope: "identify",
    redirect_uri: redirectURI(),
    state: nonce,
  });
  return DISCORD_AUTHORIZE + "?" + query;
}

// Back from Discord: take the token out of the address bar, check it answers
// the login this tab started, and learn whose it is. Resolves to the server
// to join, if the login was for one.
async function completeLogin() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (!fragment.has("access_token") && !fragment.has("error")) return null;
  history.replaceState(null, "", location.pathname + location.search);
  const pending = readJSON(PENDING_KEY);
  sessionStorage.removeItem(PENDING_KEY);
  if (!pending || fragment.get("state") !== pending.nonce) {
    showProblem("That Discord login was not started from this tab, so it was ignored. Choose the server and log in again.");
    return null;
  }
  if (fragment.has("error")) {
    showProblem("Discord did not log you in (" + (fragment.get("error_description") || fragment.get("error")) + ").");
    return pending.server;
  }
  const token = fragment.get("access_token");
  try {
    const answer = await fetch(DISCORD_ME, { headers: { Authorization: "Bearer " + token }, signal: AbortSignal.timeout(10000) });
    if (!answer.ok) throw new Error("Discord answered " + answer.status);
    const me = await answer.json();
    state.login = { token, user: { id: String(me.id), username: String(me.username) } };
    sessionStorage.setItem(LOGIN_KEY, JSON.stringify(state.login));
  } catch (error) {
    showProblem("Discord would not say who you are (" + error.message + "). Log in again.");
  }
  return pending.server;
}

function send(message) {
  if (state.socket && state.socket.readyState === WebSocket.OPEN) {
    state.socket.send(JSON.stringify(message));
  }
}

function handle(message) {
  switch (message.type) {
    case "server-list":
      state.servers = message.data || {};
      renderServers();
      // On a reconnect, rejoin where we were; on a first visit, ?s= or the default.
      join(state.current || new URLSearchParams(location.search).get("s"));
      break;
    case "server-join": {
      const data = message.data || {};
      state.pending = null;
      $("login").hidden = true;
      state.current = data.request ? data.request.server : null;
      state.snowflake = snowflakeOf(state.current);
      state.users = new Map(Object.values(data.users || {}).map((u) => [u.uid, u]));
      $("server-name").textContent = data.serverName || "Users";
      $("chat").replaceChildren();
      renderServers();
      renderUsers();
      updateClientLink();
      refreshCounts();
      break;
    }
    case "presence":
      applyPresence(message.server, message.data);
      break;
    case "message":
      addChat(message.server, message.data);
      break;
    case "error": {
      const text = message.data ? message.data.message : null;
      if (state.pending) joinFailed(text);
      else showProblem(text);
      break;
    }
  }
}

function connect() {
  const socket = new WebSocket(socketURL);
  state.socket = socket;
  socket.addEventListener("open", () => {
    state.retry = 500;
    $("connection").textContent = "Live";
  });
  socket.addEventListener("message", (event) => {
    try {
      handle(JSON.parse(event.data));
    } catch (error) {
      console.error("bad frame", error);
    }
  });
  socket.addEventListener("close", () => {
    $("connection").textContent = "Disconnected; reconnecting…";
    state.retry = Math.min(state.retry * 2, 10000);
    setTimeout(connect, state.retry);
  });
}

async function refreshCounts() {
  try {
    const stats = await (await fetch("/api/stats")).json();
    const watching = state.snowflake && stats.servers[state.snowflake] ? stats.servers[state.snowflake].watchers : 0;
    $("counts").textContent = stats.connections + " connected · " + watching + " watching this server";
    $("counts").dataset.connections = stats.connections;
  } catch (_) {
    $("counts").textContent = "";
  }
}

fetch("/api/version")
  .then((r) => r.json())
  .then((v) => { $("version").textContent = v.version; })
  .catch(() => { $("version").textContent = "?"; });
explainPlainHTTP();
updateClientLink();
completeLogin().then((server) => {
  if (server) state.current = server;
  connect();
});
setInterval(refreshCounts, 5000);
