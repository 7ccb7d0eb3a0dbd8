/* The GraphiQL console at /graphql (dev and test): every asset is served by this app (server/static/graphiql/),
 * nothing comes from a CDN. Queries and mutations go over HTTP, subscriptions over graphql-transport-ws (the
 * bearer token from the Headers tab goes into connection_init). The Headers tab starts with an Authorization
 * placeholder: run `login`, paste its token there; while the placeholder is left in, no Authorization is sent. */
(function () {
  "use strict";
  var url = location.origin + "/graphql";
  var socketUrl = url.replace(/^http/, "ws");
  var PLACEHOLDER = /^\s*Bearer\s*(<[^>]*>)?\s*$/i;

  function headersOf(options) {
    var given = (options && options.headers) || {};
    var headers = {};
    Object.keys(given).forEach(function (name) {
      if (name.toLowerCase() === "authorization" && PLACEHOLDER.test(String(given[name]))) return;
      headers[name] = given[name];
    });
    return headers;
  }

  function isSubscription(params, options) {
    var document = options && options.documentAST;
    if (!document) return /^\s*subscription\b/.test(params.query || "");
    return document.definitions.some(function (definition) {
      return (
        definition.kind === "OperationDefinition" &&
        definition.operation === "subscription" &&
        (!params.operationName || (definition.name && definition.name.value === params.operationName))
      );
    });
  }

  function overHttp(params, headers) {
    return fetch(url, {
      method: "POST",
      headers: Object.assign({ "content-type": "application/json", accept: "application/json" }, headers),
      body: JSON.stringify(params)
    }).then(function (response) { return response.json(); });
  }

  /* One socket per subscription, as an async iterable of results (what GraphiQL renders as they come). */
  function overSocket(params, headers) {
    var queue = [];
    var waiting = null;
    var done = false;
    var socket = new WebSocket(socketUrl, "graphql-transport-ws");
    function emit(value) {
      if (waiting) { var resolve = waiting; waiting = null; resolve({ value: value, done: false }); } else queue.push(value);
    }
    function finish() {
      done = true;
      if (waiting) { var resolve = waiting; waiting = null; resolve({ value: undefined, done: true }); }
    }
    socket.onopen = function () {
      var authorization = headers.Authorization || headers.authorization;
      socket.send(JSON.stringify({ type: "connection_init", payload: authorization ? { authorization: authorization } : {} }));
    };
    socket.onmessage = function (event) {
      var message = JSON.parse(event.data);
      if (message.type === "connection_ack") {
        socket.send(JSON.stringify({ id: "1", type: "subscribe", payload: params }));
      } else if (message.type === "next") {
        emit(message.payload);
      } else if (message.type === "error") {
        emit({ errors: message.payload });
        finish();
        socket.close(1000);
      } else if (message.type === "complete") {
        finish();
        socket.close(1000);
      } else if (message.type === "ping") {
        socket.send(JSON.stringify({ type: "pong" }));
      }
    };
    socket.onclose = function (event) {
      if (done) return;
      if (event.code !== 1000) emit({ errors: [{ message: "The socket closed (" + event.code + (event.reason ? ": " + event.reason : "") + ")." }] });
      finish();
    };
    var iterator = {
      next: function () {
        if (queue.length) return Promise.resolve({ value: queue.shift(), done: false });
        if (done) return Promise.resolve({ value: undefined, done: true });
        return new Promise(function (resolve) { waiting = resolve; });
      },
      return: function () {
        finish();
        socket.close(1000);
        return Promise.resolve({ value: undefined, done: true });
      }
    };
    iterator[Symbol.asyncIterator] = function () { return iterator; };
    return iterator;
  }

  function fetcher(params, options) {
    var headers = headersOf(options);
    return isSubscription(params, options) ? overSocket(params, headers) : overHttp(params, headers);
  }

  var defaultQuery = [
    "# Partnerdesk GraphQL console. Sign in (the demo password is Demo-pass-1), copy the token into the",
    "# Headers tab below in place of the placeholder, then explore: the Docs panel lists every field.",
    "mutation SignIn {",
    '  login(input: {login: "owner@acmevoice.example.com", password: "Demo-pass-1"}) {',
    "    token",
    "    errors { code message }",
    "  }",
    "}",
    ""
  ].join("\n");

  ReactDOM.createRoot(document.getElementById("graphiql")).render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultQuery: defaultQuery,
      defaultHeaders: JSON.stringify({ Authorization: "Bearer <token from login>" }, null, 2),
      defaultEditorToolsVisibility: "headers",
      shouldPersistHeaders: true
    })
  );
})();
