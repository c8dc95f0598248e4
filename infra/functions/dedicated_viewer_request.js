// Dedicated distribution: every request belongs to one tenant; the viewer cannot choose it.
function handler(event) {
  var request = event.request;
  request.headers['x-tenant-id'] = { value: '__TENANT_ID__' };
  return request;
}
