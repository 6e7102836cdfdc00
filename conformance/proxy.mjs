// The conformance suite has no way to send credentials, so this reverse proxy adds the agent
// token to every request and forwards it to the tenant's MCP endpoint. Everything else passes
// through untouched — the Host and Origin headers included, so the gateway's own DNS-rebinding
// and origin checks see exactly what the suite sent — and responses (SSE streams included)
// are relayed as they arrive.
//
//   node proxy.mjs TARGET_URL TOKEN     prints PORT=<port> once listening on 127.0.0.1
import http from 'node:http';

const [target, token] = process.argv.slice(2);
if (!target || !token) {
  console.error('usage: node proxy.mjs TARGET_URL TOKEN');
  process.exit(2);
}
const upstream = new URL(target);
const agent = new http.Agent({ keepAlive: true });

const server = http.createServer((req, res) => {
  const headers = { ...req.headers, authorization: `Bearer ${token}` };
  const forward = http.request(
    {
      agent,
      host: upstream.hostname,
      port: upstream.port,
      method: req.method,
      path: upstream.pathname,
      headers,
    },
    (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    },
  );
  forward.on('error', () => {
    if (!res.headersSent) res.writeHead(502);
    res.end();
  });
  // A client that goes away (the suite aborts its streams when done) ends the forwarded request.
  res.on('close', () => forward.destroy());
  req.pipe(forward);
});
server.listen(0, '127.0.0.1', () => {
  console.log(`PORT=${server.address().port}`);
});
