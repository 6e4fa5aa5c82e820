// The built-in live page: speaks the same WebSocket protocol as the d-zone
// client, and draws each user as a dot in their role colour. No dependencies;
// user-provided text only ever goes through textContent.
"use strict";

const $ = (id) => document.getElementById(id);
const CLIENT_URL = "https://nntin.github.io/d-zone/";
const CHAT_LINES = 50;
const socketURL = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/";

const state = {
  servers: {},      // snowflake -> {id, name, passworded}
  current: null,    // public id echoed by server-join
  snowflake: null,  // snowflake of the joined server
  users: new Map(), // uid -> {uid, username, status, roleColor}
  socket: null,
  retry: 500,
};

function safeColor(color) {
  return /^#[0-9a-f]{6}$/i.test(color || "") ? color : "#ffffff";
}

function renderServers() {
  const list = $("servers");
  list.replaceChildren();
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
    button.setAttribute("aria-pressed", String(snowflake === state.snowflake));
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
  item.dataset.status = user.status;
  item.querySelector(".dot").style.background = safeColor(user.roleColor);
  item.querySelector(".name").textContent = user.username;
  item.querySelector(".status").textContent = user.status;
  item.title = user.username + " (" + user.status + ")";
}

function renderUsers() {
  const list = $("users");
  list.replaceChildren(...[...state.users.values()].map(userItem));
  renderUserCount();
}

function renderUserCount() {
  const online = [...state.users.values()].filter((u) => u.status !== "offline").length;
  $("user-count").textContent = state.users.size + " users, " + online + " online";
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

function join(id) {
  $("problem").hidden = true;
  send({ type: "connect", data: { server: id } });
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
    case "error":
      $("problem").textContent = message.data ? message.data.message : "Something went wrong.";
      $("problem").hidden = false;
      break;
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
updateClientLink();
connect();
setInterval(refreshCounts, 5000);
