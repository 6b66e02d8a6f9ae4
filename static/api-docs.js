// Renders GET /api/v1/openapi.json with the vendored Swagger UI (no CDN).
(function () {
  var node = document.getElementById("docs");
  window.SwaggerUIBundle({ url: node.dataset.specUrl, domNode: node, deepLinking: true });
})();
