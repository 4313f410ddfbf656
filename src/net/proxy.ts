import type * as http from 'node:http';
import { HttpProxyAgent } from 'http-proxy-agent';
import { HttpsProxyAgent } from 'https-proxy-agent';
import { getProxyForUrl } from 'proxy-from-env';
import { proxyConfigured } from './proxy-env.js';

/**
 * Outgoing requests through the proxy the environment names, as curl and pip read it:
 * `HTTPS_PROXY` for https URLs, `HTTP_PROXY` for http ones, `ALL_PROXY` for both (lower-case
 * spellings too), and `NO_PROXY` (comma-separated hosts, `.domain` suffixes, `host:port`, `*`)
 * for hosts reached directly. Cluster nodes often reach the web only this way.
 *
 * - `fetch` (model servers over KServe, remote inputs, fetch-assets): undici's EnvHttpProxyAgent
 *   as the process's dispatcher, installed by `installFetchProxy` when a proxy is set.
 * - node:http clients (image downloads, OpenAI-compatible endpoints): `ProxyAgents`, one
 *   keep-alive agent per proxy (https-proxy-agent tunnels with CONNECT; http-proxy-agent sends
 *   absolute-form requests).
 */

/** The proxy URL for `url` under the environment (NO_PROXY applied), or undefined to go direct. */
export function proxyFor(url: string | URL): string | undefined {
  const p = getProxyForUrl(typeof url === 'string' ? url : url.href);
  if (!p) return undefined;
  // "host:3128" means http://host:3128, as curl reads it.
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(p) ? p : `http://${p}`;
}

let installed = false;

/**
 * Routes the process's `fetch` through the environment's proxy (honouring NO_PROXY); nothing when
 * none is set (undici is loaded only then, keeping it off the CLI's start-up).
 */
export async function installFetchProxy(env: NodeJS.ProcessEnv = process.env): Promise<boolean> {
  if (installed || !proxyConfigured(env)) return installed;
  const { EnvHttpProxyAgent, setGlobalDispatcher } = await import('undici');
  const get = (n: string) => env[n] ?? env[n.toLowerCase()];
  setGlobalDispatcher(new EnvHttpProxyAgent({ httpProxy: get('HTTP_PROXY') ?? get('ALL_PROXY'), httpsProxy: get('HTTPS_PROXY') ?? get('ALL_PROXY'), noProxy: get('NO_PROXY') }));
  installed = true;
  return true;
}

/** Keep-alive agents that reach targets through a proxy, one pair per proxy URL. */
export class ProxyAgents {
  private readonly agents = new Map<string, http.Agent>();

  constructor(private readonly options: http.AgentOptions = { keepAlive: true }) {}

  /** The agent for a request to a `protocol` ('http:' or 'https:') target through `proxy`. */
  agent(proxy: string, protocol: string): http.Agent {
    const k = `${protocol} ${proxy}`;
    let a = this.agents.get(k);
    if (!a) {
      a = protocol === 'https:' ? new HttpsProxyAgent(proxy, this.options) : new HttpProxyAgent(proxy, this.options);
      this.agents.set(k, a);
    }
    return a;
  }

  /** The agent for `url`: through its proxy, or `direct` where NO_PROXY (or no proxy) says so. */
  for(url: URL, direct: http.Agent): { agent: http.Agent; proxy?: string } {
    const proxy = proxyFor(url);
    return proxy ? { agent: this.agent(proxy, url.protocol), proxy } : { agent: direct };
  }

  destroy(): void {
    for (const a of this.agents.values()) a.destroy();
    this.agents.clear();
  }
}
