// Runs one CloudFront Function (cloudfront-js-2.0) under node against one recorded event.
// stdin: {"code": <function source>, "kvs": {<key>: <value>}, "event": <viewer event>}
// stdout: {"result": <what handler returned>} or {"error": <message>}.
// The runtime's `cloudfront` module is stood in for by its documented KeyValueStore API:
// kvs().get(key) resolves to the value, and rejects when the key is absent.
import vm from 'node:vm';

const input = JSON.parse(await new Promise((resolve) => {
  let data = '';
  process.stdin.on('data', (c) => { data += c; });
  process.stdin.on('end', () => resolve(data));
}));
const store = input.kvs || {};
const cloudfront = {
  kvs: () => ({
    get: async (key) => {
      if (!Object.prototype.hasOwnProperty.call(store, key)) throw new Error(`Key ${key} not found`);
      return store[key];
    },
    exists: async (key) => Object.prototype.hasOwnProperty.call(store, key),
  }),
};
// The only import cloudfront-js-2.0 offers: `import cf from 'cloudfront'`.
const importLine = /^import\s+(\w+)\s+from\s+['"]cloudfront['"];?\s*$/m;
let code = input.code;
const m = code.match(importLine);
if (m) code = code.replace(importLine, `var ${m[1]} = __cloudfront;`);
if (/\bimport\b|\brequire\s*\(/.test(code)) {
  process.stdout.write(JSON.stringify({ error: 'imports other than cloudfront are not available' }));
  process.exit(0);
}
const context = vm.createContext({ __cloudfront: cloudfront, console });
try {
  const handler = vm.runInContext(`"use strict";\n${code}\n;handler`, context, { timeout: 1000 });
  const result = await handler(input.event);
  process.stdout.write(JSON.stringify({ result }));
} catch (err) {
  process.stdout.write(JSON.stringify({ error: String(err && err.message || err) }));
}
