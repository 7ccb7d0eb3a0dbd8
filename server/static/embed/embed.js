/* Partnerdesk embed snippet. Paste where the widget should appear:
 *   <script src="https://API/embed.js" data-token="pd_embed_…" data-sections="WALLET,CREDITS" async></script>
 * Optional: data-height="320px" (a fixed height; otherwise the frame follows the widget's height),
 * data-width="100%", data-title="Usage and billing".
 * It adds one sandboxed iframe right after this script: the widget runs in an opaque origin, so it cannot reach
 * this page (nor this page it), and its requests carry no Referer. */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || !script.src) return;
  var token = script.getAttribute("data-token");
  if (!token) {
    if (window.console) console.error("partnerdesk embed: data-token is missing");
    return;
  }
  var api = new URL(script.src, location.href).origin;
  var url = new URL("/embed", api);
  url.searchParams.set("token", token);
  var sections = script.getAttribute("data-sections");
  if (sections) url.searchParams.set("sections", sections);
  var fixedHeight = script.getAttribute("data-height");

  var frame = document.createElement("iframe");
  frame.src = url.toString();
  frame.title = script.getAttribute("data-title") || "Usage and billing";
  frame.setAttribute("sandbox", "allow-scripts");
  frame.setAttribute("referrerpolicy", "no-referrer");
  frame.style.border = "0";
  frame.style.display = "block";
  frame.style.width = script.getAttribute("data-width") || "100%";
  frame.style.height = fixedHeight || "240px";

  window.addEventListener("message", function (event) {
    if (event.source !== frame.contentWindow || fixedHeight) return;
    var data = event.data;
    if (data && data.type === "partnerdesk-embed:resize" && typeof data.height === "number" && isFinite(data.height)) {
      frame.style.height = Math.max(60, Math.min(2000, Math.round(data.height))) + "px";
    }
  });
  script.parentNode.insertBefore(frame, script.nextSibling);
})();
