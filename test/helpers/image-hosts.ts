import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

const listen = (server: Server, port: number) => new Promise<number>((r) => server.listen(port, '127.0.0.1', () => r((server.address() as AddressInfo).port)));
const closeServer = (server: Server) => new Promise<void>((r) => {
  server.close(() => r());
  server.closeAllConnections();
});

/** Image hosts on several ports that can all stop (connections refused) and start again on the same ports. */
export class ImageHosts {
  private servers: Server[] = [];
  /** A pause before each answer, so a run can be caught in the middle of a unit. */
  delayMs = 0;
  private gate?: Promise<void>;
  private constructor(readonly ports: number[], private readonly images: Map<string, Buffer>) {}

  static async start(n: number, images: Map<string, Buffer>): Promise<ImageHosts> {
    const h = new ImageHosts([], images);
    for (let i = 0; i < n; i++) h.ports.push(await h.listenOn(0));
    return h;
  }

  private async listenOn(port: number): Promise<number> {
    const server = createServer((req, res) => {
      const body = this.images.get(decodeURIComponent((req.url ?? '').split('/').pop() ?? ''));
      if (!body) return void res.writeHead(404).end('no such image');
      const answer = () => setTimeout(() => res.writeHead(200, { 'Content-Type': 'image/jpeg', 'Content-Length': body.length }).end(body), this.delayMs);
      if (this.gate) void this.gate.then(answer);
      else answer();
    });
    this.servers.push(server);
    return listen(server, port);
  }

  /**
   * Holds every answer until the returned function is called: a run is caught in the middle of
   * a unit for exactly as long as a test needs, however slow the machine.
   */
  hold(): () => void {
    let release!: () => void;
    this.gate = new Promise((r) => (release = r));
    return () => {
      this.gate = undefined;
      release();
    };
  }

  async stop(): Promise<void> {
    await Promise.all(this.servers.map(closeServer));
    this.servers = [];
  }

  async restart(): Promise<void> {
    for (const p of this.ports) await this.listenOn(p);
  }

  url(i: number, name: string): string {
    return `http://127.0.0.1:${this.ports[i % this.ports.length]}/img/${name}`;
  }
}

