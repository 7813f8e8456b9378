// The real node's stand-in for kube-proxy, for the few addresses its pods need on a machine
// without iptables: the API server's Service address (10.96.0.1:443, in the API server's
// certificate) and NATS, both of which listen on loopback only. Each forward is a plain TCP
// relay from an address on the node's bridge to 127.0.0.1.
//
//   node service-proxy.ts <listen-ip>:<port>=<loopback-port> …
import net from "node:net";

for (const spec of process.argv.slice(2)) {
  const m = /^([\d.]+):(\d+)=(\d+)$/.exec(spec);
  if (!m) {
    console.error(`service-proxy: not <ip>:<port>=<port>: ${spec}`);
    process.exit(2);
  }
  const [, host, port, target] = m as unknown as [string, string, string, string];
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target), "127.0.0.1");
    client.pipe(upstream).pipe(client);
    const close = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on("error", close);
    upstream.on("error", close);
  });
  server.on("error", (e) => {
    console.error(`service-proxy: ${host}:${port}: ${e.message}`);
    process.exit(1);
  });
  server.listen(Number(port), host, () => console.log(`service-proxy: ${host}:${port} -> 127.0.0.1:${target}`));
}
