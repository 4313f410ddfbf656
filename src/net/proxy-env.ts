/**
 * Whether the environment names a proxy, without loading the proxy code (proxy.ts): the CLI
 * checks this at start-up, and only a process that has one pays for the agents and undici.
 */
export const PROXY_VARS = ['HTTPS_PROXY', 'HTTP_PROXY', 'ALL_PROXY'] as const;

const get = (env: NodeJS.ProcessEnv, name: string): string | undefined => env[name] || env[name.toLowerCase()] || undefined;

/** Whether the environment names any proxy (upper- or lower-case spellings). */
export const proxyConfigured = (env: NodeJS.ProcessEnv = process.env): boolean => PROXY_VARS.some((n) => !!get(env, n));
