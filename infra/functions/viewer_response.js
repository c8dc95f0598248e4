// Security headers on every response, whatever the generated app sets.
function handler(event) {
  var headers = event.response.headers;
  headers['strict-transport-security'] = { value: 'max-age=63072000; includeSubDomains' };
  headers['x-content-type-options'] = { value: 'nosniff' };
  headers['x-frame-options'] = { value: 'DENY' };
  headers['referrer-policy'] = { value: 'strict-origin-when-cross-origin' };
  headers['permissions-policy'] = { value: 'camera=(), microphone=(), geolocation=()' };
  return event.response;
}
