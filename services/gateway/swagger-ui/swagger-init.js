// Swagger UI for the gateway's own OpenAPI document (served by the gateway).
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    // Show every operation with its summary without a click per tag.
    docExpansion: "list",
    persistAuthorization: false,
    tryItOutEnabled: false,
  });
});
