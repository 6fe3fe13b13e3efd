// The API reference page: fetches openapi.json and renders every operation, with a small
// "try it" form per operation. Plain DOM, no dependencies, no build step.
"use strict";

const METHODS = ["get", "post", "put", "patch", "delete"];
let doc = null;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// Inline `code` spans in descriptions; everything else stays text (no HTML injection).
function prose(text) {
  if (!text) return null;
  return el("p", { class: "prose" }, text.split(/(`[^`]+`)/).map((part) =>
    part.startsWith("`") && part.endsWith("`") ? el("code", {}, part.slice(1, -1)) : part));
}

function refName(schema) {
  return schema && schema.$ref ? schema.$ref.split("/").pop() : null;
}

function resolve(schema) {
  let seen = 0;
  while (schema && schema.$ref && seen++ < 32) {
    const name = refName(schema);
    schema = (doc.components && doc.components.schemas || {})[name] || {};
  }
  return schema || {};
}

function nonNullBranches(schema) {
  return (schema.anyOf || schema.oneOf || []).filter((s) => s.type !== "null");
}

function isNullable(schema) {
  const branches = schema.anyOf || schema.oneOf || [];
  return branches.some((s) => s.type === "null") ||
    (Array.isArray(schema.type) && schema.type.includes("null"));
}

function typeLabel(schema) {
  if (!schema) return "any";
  const name = refName(schema);
  if (name) return name;
  if (schema.anyOf || schema.oneOf) {
    return nonNullBranches(schema).map(typeLabel).join(" | ") || "null";
  }
  if (schema.const !== undefined) return JSON.stringify(schema.const);
  if (schema.format === "binary") return "file";
  if (schema.type === "array") return `${typeLabel(schema.items)}[]`;
  if (Array.isArray(schema.type)) return schema.type.filter((t) => t !== "null").join(" | ");
  if (schema.enum && !schema.type) return "enum";
  return schema.type || "any";
}

function enumOf(schema) {
  if (schema.enum) return schema.enum.filter((v) => v !== null);
  for (const branch of nonNullBranches(schema)) {
    const values = enumOf(resolve(branch));
    if (values.length) return values;
  }
  return [];
}

function bounds(schema) {
  const parts = [];
  const add = (s) => {
    if (s.minimum !== undefined) parts.push(`≥ ${s.minimum}`);
    if (s.exclusiveMinimum !== undefined) parts.push(`> ${s.exclusiveMinimum}`);
    if (s.maximum !== undefined) parts.push(`≤ ${s.maximum}`);
    if (s.exclusiveMaximum !== undefined) parts.push(`< ${s.exclusiveMaximum}`);
    if (s.minLength !== undefined) parts.push(`length ≥ ${s.minLength}`);
    if (s.maxLength !== undefined) parts.push(`length ≤ ${s.maxLength}`);
    if (s.minItems !== undefined) parts.push(`items ≥ ${s.minItems}`);
    if (s.maxItems !== undefined) parts.push(`items ≤ ${s.maxItems}`);
    if (s.pattern !== undefined) parts.push(`matches ${s.pattern}`);
  };
  add(schema);
  nonNullBranches(schema).forEach((branch) => add(resolve(branch)));
  return parts.join(", ");
}

function fieldsTable(schema) {
  const object = resolve(schema);
  const properties = object.properties || {};
  const required = new Set(object.required || []);
  const names = Object.keys(properties).sort((a, b) => required.has(b) - required.has(a));
  if (!names.length) return el("p", { class: "muted" }, typeLabel(schema));
  const rows = names.map((name) => {
    const prop = properties[name];
    const resolved = resolve(prop);
    const values = enumOf(resolved);
    const hasDefault = Object.prototype.hasOwnProperty.call(resolved, "default");
    return el("tr", {},
      el("td", {}, el("code", {}, name), required.has(name) ? el("span", { class: "badge required" }, "required") : null),
      el("td", {}, typeLabel(prop), isNullable(prop) ? el("span", { class: "muted" }, " | null") : null),
      el("td", {}, hasDefault ? el("code", {}, JSON.stringify(resolved.default)) : "–"),
      el("td", {}, values.length ? values.map((v) => el("code", { class: "enum" }, String(v))) : null,
        bounds(resolved)),
      el("td", {}, prose(resolved.description || prop.description)));
  });
  return el("table", { class: "fields" },
    el("thead", {}, el("tr", {}, ["Field", "Type", "Default", "Allowed", "Description"].map((h) => el("th", {}, h)))),
    el("tbody", {}, rows));
}

function schemaDetails(schema) {
  const resolved = resolve(schema);
  const name = refName(schema);
  if (resolved.type === "object" || resolved.properties) {
    return el("details", { class: "schema" }, el("summary", {}, name || "object"),
      prose(resolved.description), fieldsTable(schema));
  }
  if (resolved.type === "array" && resolved.items) {
    const items = resolve(resolved.items);
    if (items.properties) {
      return el("details", { class: "schema" }, el("summary", {}, typeLabel(resolved)), fieldsTable(resolved.items));
    }
  }
  return el("span", { class: "muted" }, typeLabel(schema));
}

function responsesSection(responses) {
  return el("table", { class: "responses" },
    el("thead", {}, el("tr", {}, ["Status", "Description", "Content"].map((h) => el("th", {}, h)))),
    el("tbody", {}, Object.entries(responses || {}).map(([status, response]) =>
      el("tr", {},
        el("td", {}, el("span", { class: `status s${status[0]}` }, status)),
        el("td", {}, prose(response.description),
          response.headers ? el("p", { class: "muted small" }, "Headers: ",
            Object.keys(response.headers).map((h) => el("code", {}, h))) : null),
        el("td", {}, Object.entries(response.content || {}).map(([media, body]) =>
          el("div", { class: "media" }, el("code", {}, media), " ",
            body.schema && !media.startsWith("audio/") ? schemaDetails(body.schema) : null)))))));
}

// A starting body from the schema: required fields with their defaults or a placeholder.
function exampleFor(schema) {
  const resolved = resolve(schema);
  if (resolved.examples && resolved.examples.length) return resolved.examples[0];
  if (resolved.default !== undefined) return resolved.default;
  const values = enumOf(resolved);
  if (values.length) return values[0];
  const branches = nonNullBranches(resolved);
  if (branches.length) return exampleFor(branches[0]);
  switch (resolved.type) {
    case "object": {
      const body = {};
      for (const name of resolved.required || []) body[name] = exampleFor(resolved.properties[name]);
      return body;
    }
    case "array": return [];
    case "integer": return resolved.minimum !== undefined ? resolved.minimum : 0;
    case "number": return resolved.minimum !== undefined ? resolved.minimum : 0;
    case "boolean": return false;
    default: return "text";
  }
}

function wavFromPcm(pcm, sampleRate) {
  const header = new DataView(new ArrayBuffer(44));
  const ascii = (offset, text) => [...text].forEach((c, i) => header.setUint8(offset + i, c.charCodeAt(0)));
  ascii(0, "RIFF"); header.setUint32(4, 36 + pcm.byteLength, true); ascii(8, "WAVE");
  ascii(12, "fmt "); header.setUint32(16, 16, true); header.setUint16(20, 1, true);
  header.setUint16(22, 1, true); header.setUint32(24, sampleRate, true);
  header.setUint32(28, sampleRate * 2, true); header.setUint16(32, 2, true);
  header.setUint16(34, 16, true); ascii(36, "data"); header.setUint32(40, pcm.byteLength, true);
  return new Blob([header.buffer, pcm], { type: "audio/wav" });
}

async function showResponse(output, response, started) {
  const media = (response.headers.get("content-type") || "").split(";")[0].trim();
  const elapsed = ((performance.now() - started) / 1000).toFixed(2);
  const head = el("p", { class: "result-head" },
    el("span", { class: `status s${String(response.status)[0]}` }, `${response.status} ${response.statusText}`),
    " ", el("code", {}, media || "no content type"), el("span", { class: "muted" }, ` · ${elapsed} s`));
  output.replaceChildren(head);
  if (media.startsWith("audio/")) {
    let blob = await response.blob();
    if (media === "audio/pcm") {
      const rate = Number(response.headers.get("x-sample-rate")) || 24000;
      blob = wavFromPcm(await blob.arrayBuffer(), rate);
    }
    const url = URL.createObjectURL(blob);
    output.append(el("audio", { controls: true, src: url }),
      el("p", { class: "muted small" }, `${blob.size} bytes · `,
        el("a", { href: url, download: `speech.${media === "audio/pcm" ? "wav" : media.split("/")[1]}` }, "download")));
    return;
  }
  const text = await response.text();
  let shown = text;
  if (media.includes("json")) {
    try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch (_) { /* show as sent */ }
  }
  output.append(el("pre", { class: "body" }, shown.length > 20000 ? `${shown.slice(0, 20000)}\n…` : shown));
}

function tryIt(path, method, operation) {
  const params = (operation.parameters || []).filter((p) => p.in === "path");
  const paramInputs = params.map((p) => [p.name, el("input", { type: "text", placeholder: p.name, required: true })]);
  const content = (operation.requestBody && operation.requestBody.content) || {};
  const json = content["application/json"];
  const multipart = content["multipart/form-data"];
  let textarea = null;
  let formInputs = [];
  if (json) {
    const example = json.example !== undefined ? json.example : exampleFor(json.schema);
    textarea = el("textarea", { rows: 6, spellcheck: "false" }, JSON.stringify(example, null, 2));
  } else if (multipart) {
    const schema = resolve(multipart.schema);
    const required = new Set(schema.required || []);
    formInputs = Object.entries(schema.properties || {}).map(([name, prop]) => {
      const resolved = resolve(prop);
      const values = enumOf(resolved);
      let input;
      if (resolved.format === "binary") input = el("input", { type: "file", accept: "audio/*" });
      else if (values.length) input = el("select", {}, el("option", { value: "" }, "(default)"), values.map((v) => el("option", { value: v }, v)));
      else input = el("input", { type: "text", placeholder: resolved.default !== undefined ? String(resolved.default) : "" });
      return [name, input, required.has(name)];
    });
  }
  const output = el("div", { class: "result" });
  const send = el("button", { type: "submit" }, "Send");
  const form = el("form", { class: "try-form" },
    paramInputs.map(([name, input]) => el("label", {}, el("code", {}, name), input)),
    textarea ? el("label", { class: "wide" }, "JSON body", textarea) : null,
    formInputs.map(([name, input, isRequired]) => el("label", {}, el("code", {}, name), isRequired ? el("span", { class: "badge required" }, "required") : null, input)),
    el("div", { class: "actions" }, send), output);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    let url = path;
    for (const [name, input] of paramInputs) url = url.replace(`{${name}}`, encodeURIComponent(input.value));
    const headers = {};
    const key = document.getElementById("api-key").value.trim();
    if (key) headers.Authorization = `Bearer ${key}`;
    const init = { method: method.toUpperCase(), headers };
    if (textarea) {
      try { JSON.parse(textarea.value); } catch (error) {
        output.replaceChildren(el("p", { class: "error" }, `Body is not valid JSON: ${error.message}`));
        return;
      }
      headers["Content-Type"] = "application/json";
      init.body = textarea.value;
    } else if (multipart) {
      const data = new FormData();
      for (const [name, input] of formInputs) {
        if (input.type === "file") { if (input.files.length) data.append(name, input.files[0]); }
        else if (input.value !== "") data.append(name, input.value);
      }
      init.body = data;  // the browser sets the multipart boundary
    }
    send.disabled = true;
    output.replaceChildren(el("p", { class: "muted" }, "Waiting…"));
    const started = performance.now();
    try {
      await showResponse(output, await fetch(url, init), started);
    } catch (error) {
      output.replaceChildren(el("p", { class: "error" }, `Request failed: ${error.message}`));
    } finally {
      send.disabled = false;
    }
  });
  return el("details", { class: "try" }, el("summary", {}, "Try it"), form);
}

function operationCard(path, method, operation) {
  const id = operation.operationId || `${method}-${path}`;
  const body = operation.requestBody && operation.requestBody.content || {};
  const isPublic = Array.isArray(operation.security) && operation.security.length === 0;
  return el("section", { class: "operation", id },
    el("h3", {}, el("span", { class: `method ${method}` }, method.toUpperCase()), " ",
      el("code", { class: "path" }, path), " ", el("span", { class: "summary" }, operation.summary || ""),
      isPublic ? el("span", { class: "badge public" }, "no key") : null),
    prose(operation.description),
    (operation.parameters || []).length ? el("div", {}, el("h4", {}, "Path parameters"),
      el("ul", {}, operation.parameters.map((p) => el("li", {}, el("code", {}, p.name), " ", prose(p.description))))) : null,
    Object.entries(body).map(([media, content]) => el("div", {},
      el("h4", {}, "Request body ", el("code", {}, media), refName(content.schema) ? el("span", { class: "muted" }, ` ${refName(content.schema)}`) : null),
      prose(resolve(content.schema).description), fieldsTable(content.schema))),
    el("h4", {}, "Responses"), responsesSection(operation.responses),
    tryIt(path, method, operation));
}

function render() {
  document.title = `${doc.info.title} ${doc.info.version} · API reference`;
  document.getElementById("title").textContent = `${doc.info.title} ${doc.info.version}`;
  document.getElementById("description").replaceChildren(prose(doc.info.description) || "");
  const byTag = new Map((doc.tags || []).map((t) => [t.name, []]));
  for (const [path, item] of Object.entries(doc.paths || {})) {
    for (const method of METHODS) {
      if (!item[method]) continue;
      const tag = (item[method].tags || ["Other"])[0];
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push([path, method, item[method]]);
    }
  }
  const main = document.getElementById("operations");
  const toc = document.getElementById("toc");
  main.replaceChildren();
  toc.replaceChildren();
  for (const [tag, operations] of byTag) {
    if (!operations.length) continue;
    main.append(el("h2", { id: `tag-${tag}` }, tag), ...operations.map((op) => operationCard(...op)));
    toc.append(el("h2", {}, el("a", { href: `#tag-${tag}` }, tag)), el("ul", {}, operations.map(([path, method, op]) =>
      el("li", {}, el("a", { href: `#${op.operationId || `${method}-${path}`}` },
        el("span", { class: `method small ${method}` }, method.toUpperCase()), " ", path)))));
  }
}

async function main() {
  const target = document.getElementById("operations");
  try {
    const response = await fetch("openapi.json");
    if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
    doc = await response.json();
    render();
  } catch (error) {
    target.replaceChildren(el("p", { class: "error" }, `Could not load openapi.json: ${error.message}`));
  }
}

main();
