// Preloaded into a Node server that listens on PORT=0 (`node --import ./report-port.mjs …`):
// prints the port it got as `{"port": N}` on stdout, so the tests reserve no port beforehand.
import net from 'node:net';

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function patched(...args) {
  this.once('listening', () => {
    const address = this.address();
    if (address && typeof address === 'object') {
      process.stdout.write(`${JSON.stringify({ port: address.port })}\n`);
    }
  });
  return listen.apply(this, args);
};
