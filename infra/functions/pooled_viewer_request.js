// Pooled (multi-tenant) distribution: the tenant id comes from the KeyValueStore,
// keyed by the host name; an unknown host is refused here, before any origin.
import cf from 'cloudfront';

const kvs = cf.kvs();

async function handler(event) {
  var request = event.request;
  var host = (request.headers.host && request.headers.host.value || '').toLowerCase();
  try {
    var tenant = await kvs.get(host);
    request.headers['x-tenant-id'] = { value: tenant };
    return request;
  } catch (err) {
    return { statusCode: 404, statusDescription: 'Not Found' };
  }
}
