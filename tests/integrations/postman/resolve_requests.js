// Loads a Postman collection with Postman's own SDK (postman-collection) and prints, for every
// request, what Postman would send: method, URL with variables and path variables filled in,
// enabled headers (the bearer auth as an Authorization header) and the raw body.
//
// usage: node resolve_requests.js <collection.json> '{"variables": {...}, "path": {...}}'
// NODE_PATH must hold the directory where postman-collection is installed.
"use strict";
const fs = require("fs");
const sdk = require("postman-collection");

const [collectionPath, overridesJson] = process.argv.slice(2);
const overrides = JSON.parse(overridesJson || "{}");
const collection = new sdk.Collection(JSON.parse(fs.readFileSync(collectionPath, "utf8")));
const scope = new sdk.VariableScope({ values: collection.variables.all().map((v) => v.toJSON()) });
for (const [key, value] of Object.entries(overrides.variables || {})) {
  scope.set(key, value, "string");
}

const requests = [];
collection.forEachItem((item) => {
  const request = item.request;
  const url = new sdk.Url(request.url.toJSON());
  url.variables.each((variable) => {
    if (variable.key in (overrides.path || {})) variable.set(overrides.path[variable.key]);
  });
  const headers = request.headers
    .all()
    .filter((header) => !header.disabled)
    .map((header) => [header.key, scope.replaceIn(header.value)]);
  const auth = item.getAuth();
  if (auth && auth.type === "bearer") {
    headers.push(["Authorization", "Bearer " + scope.replaceIn(auth.parameters().get("token"))]);
  }
  const parent = item.parent();
  requests.push({
    folder: parent && parent !== collection ? parent.name : null,
    name: item.name,
    method: request.method,
    url: scope.replaceIn(url.toString()),
    path_variables: url.variables.all().map((v) => v.key),
    headers,
    auth: auth ? auth.type : null,
    body: request.body && request.body.mode === "raw" ? scope.replaceIn(request.body.raw) : null,
    body_mode: request.body ? request.body.mode : null,
    responses: item.responses.count(),
  });
});
process.stdout.write(JSON.stringify({ name: collection.name, id: collection.id, requests }));
