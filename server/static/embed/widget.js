/* The embed widget (server/embed.py): renders the token's sections and keeps them live over graphql-transport-ws.
 * No framework, no build step. The token stays in this frame: it is read from the page's own URL and sent only to
 * this API, in the socket's connection_init message. */
(function () {
  "use strict";

  var config = JSON.parse(document.getElementById("pd-embed").textContent);
  var token = new URLSearchParams(location.search).get("token") || "";
  var root = document.documentElement;
  var statusLine = document.querySelector(".pd-status");
  var messageLine = document.querySelector(".pd-message");
  var UNITS = {
    VOICE_MINUTES: "Voice minutes",
    SMS_SEGMENTS: "SMS segments",
    CHAT_TURNS: "Chat turns",
    EMAILS: "Emails",
    PHONE_NUMBER_MONTHS: "Phone numbers",
    STORAGE_MB: "Storage (MB-months)"
  };
  var HEALTH = { OK: "", LOW: "pd-warn", CRITICAL: "pd-bad" };
  var CAP = { NONE: "", UNDER: "", WARNING: "pd-warn", REACHED: "pd-bad" };

  root.style.setProperty("--pd-primary", config.branding.primaryColor);
  root.style.setProperty("--pd-secondary", config.branding.secondaryColor);

  function money(value) {
    if (!value) return "—";
    try {
      return new Intl.NumberFormat(undefined, { style: "currency", currency: value.currency }).format(Number(value.amount));
    } catch (e) {
      return value.amount + " " + value.currency;
    }
  }

  function number(value, digits) {
    return new Intl.NumberFormat(undefined, { maximumFractionDigits: digits === undefined ? 2 : digits }).format(Number(value));
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function badge(text, className) {
    return el("span", "pd-badge " + (className || ""), text);
  }

  function bar(ratio, className) {
    var outer = el("div", "pd-bar");
    var inner = el("span", className || "");
    inner.style.width = Math.max(0, Math.min(100, ratio * 100)).toFixed(1) + "%";
    outer.appendChild(inner);
    return outer;
  }

  var RENDER = {
    WALLET: function (data) {
      var wallet = data.walletUpdated;
      var nodes = [el("p", "pd-value", money(wallet.balance))];
      if (wallet.estimatedDaysUntilRefill !== null) {
        nodes.push(el("p", "pd-note", "About " + number(wallet.estimatedDaysUntilRefill, 0) + " days until a refill"));
      } else if (wallet.refillThreshold) {
        nodes.push(el("p", "pd-note", "Refill below " + money(wallet.refillThreshold)));
      }
      return nodes;
    },
    CREDITS: function (data) {
      var credits = data.creditsUpdated;
      var value = el("p", "pd-value", number(credits.available));
      if (credits.health !== "OK") value.appendChild(badge(credits.health, HEALTH[credits.health]));
      var assigned = Number(credits.assigned);
      return [
        value,
        el("p", "pd-note", number(credits.used) + " used of " + number(credits.assigned) + " assigned"),
        bar(assigned > 0 ? Number(credits.available) / assigned : 0, HEALTH[credits.health])
      ];
    },
    SPENDING_CAP: function (data) {
      var cap = data.spendingCapUpdated;
      var value = el("p", "pd-value", money(cap.spentThisMonth));
      if (cap.status === "WARNING" || cap.status === "REACHED") value.appendChild(badge(cap.status, CAP[cap.status]));
      var nodes = [value];
      if (cap.cap) {
        nodes.push(el("p", "pd-note", "of " + money(cap.cap) + " this month · projected " + money(cap.projectedTotal)));
        nodes.push(bar(Number(cap.spentThisMonth.amount) / Number(cap.cap.amount), CAP[cap.status]));
      } else {
        nodes.push(el("p", "pd-note", "No cap · projected " + money(cap.projectedTotal)));
      }
      return nodes;
    },
    USAGE_DASHBOARD: function (data) {
      var rows = data.usageSummaryUpdated;
      if (!rows.length) return [el("p", "pd-note", "No usage yet this month.")];
      var table = el("table", "pd-table");
      var total = 0;
      var currency = rows[0].cost.currency;
      rows.forEach(function (row) {
        var tr = el("tr");
        tr.appendChild(el("td", "", UNITS[row.unitType] || row.unitType));
        tr.appendChild(el("td", "", number(row.quantity)));
        tr.appendChild(el("td", "", money(row.cost)));
        table.appendChild(tr);
        total += Number(row.cost.amount);
      });
      var sum = el("tr");
      sum.appendChild(el("td", "", "Total"));
      sum.appendChild(el("td", "", ""));
      sum.appendChild(el("td", "", money({ amount: String(total), currency: currency })));
      table.appendChild(sum);
      return [table];
    }
  };

  function show(section, nodes) {
    var card = document.querySelector('[data-section="' + section + '"]');
    if (!card) return;
    var body = card.querySelector(".pd-body");
    body.textContent = "";
    nodes.forEach(function (node) { body.appendChild(node); });
    card.setAttribute("aria-busy", "false");
    resized();
  }

  function refused() {
    document.querySelector(".pd-sections").hidden = true;
    messageLine.textContent = config.refusedMessage;
    messageLine.hidden = false;
    statusLine.textContent = "";
    resized();
  }

  /* Tell the host page (embed.js) how tall the widget is, so the frame fits it. Nothing else is posted. */
  var lastHeight = 0;
  function resized() {
    var height = Math.ceil(document.documentElement.getBoundingClientRect().height);
    if (height !== lastHeight && window.parent !== window) {
      lastHeight = height;
      window.parent.postMessage({ type: "partnerdesk-embed:resize", height: height }, "*");
    }
  }

  /* graphql-transport-ws: connection_init with the token, one subscription per section, reconnect with backoff. */
  var retries = 0;
  function connect() {
    var url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/graphql";
    var socket = new WebSocket(url, "graphql-transport-ws");
    socket.onopen = function () {
      socket.send(JSON.stringify({ type: "connection_init", payload: { authorization: "Bearer " + token } }));
    };
    socket.onmessage = function (event) {
      var message = JSON.parse(event.data);
      if (message.type === "connection_ack") {
        retries = 0;
        statusLine.textContent = "";
        config.sections.forEach(function (section) {
          socket.send(JSON.stringify({
            id: section,
            type: "subscribe",
            payload: { query: config.operations[section], variables: { id: config.customerId } }
          }));
        });
      } else if (message.type === "next" && message.payload.data && RENDER[message.id]) {
        show(message.id, RENDER[message.id](message.payload.data));
      } else if (message.type === "error" || (message.type === "next" && !message.payload.data)) {
        show(message.id, [el("p", "pd-unavailable", "Not available right now.")]);
      } else if (message.type === "ping") {
        socket.send(JSON.stringify({ type: "pong" }));
      }
    };
    socket.onclose = function (event) {
      if (event.code === 4403 || event.code === 4401) {
        refused();  // expired, revoked or switched off: a new link is needed
        return;
      }
      retries += 1;
      statusLine.textContent = "Reconnecting…";
      setTimeout(connect, Math.min(30000, 500 * Math.pow(2, retries)) * (0.5 + Math.random() / 2));
    };
  }

  if (typeof ResizeObserver === "function") new ResizeObserver(resized).observe(document.body);
  resized();
  connect();
})();
