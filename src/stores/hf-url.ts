/**
 * `hf://datasets/<owner>/<name>[@revision]/<path>`: a file or folder of a Hugging Face Hub dataset
 * (LAION-COCO, DiffusionDB's metadata, Dalle3-1M live there), read over HTTPS from the Hub's
 * resolve URLs (`<endpoint>/datasets/<owner>/<name>/resolve/<revision>/<path>`, which redirect to
 * its CDN), with `HF_TOKEN` as a bearer token when set. `HF_ENDPOINT` (the Hub client's own
 * variable) points elsewhere: a mirror, or a test server. A plan pins the revision to the commit
 * it resolved to, so a rerun reads the same bytes when the dataset moves on.
 */
export interface HfPath {
  repo: string;
  /** Branch, tag or commit; 'main' when the URL names none. */
  revision: string;
  /** Inside the repo, no leading slash ('' for its root). */
  path: string;
}

const HF_RE = /^hf:\/\/datasets\/([^/@]+\/[^/@]+)(?:@([^/]+))?(?:\/(.*))?$/;

export const isHfUrl = (url: string): boolean => url.startsWith('hf://');

export function parseHfUrl(url: string): HfPath {
  const m = HF_RE.exec(url);
  if (!m) throw new Error(`${url}: expected hf://datasets/<owner>/<name>[@revision]/<path>`);
  return { repo: m[1], revision: m[2] ? decodeURIComponent(m[2]) : 'main', path: (m[3] ?? '').replace(/\/+$/, '') };
}

export const hfUrl = (p: HfPath): string => `hf://datasets/${p.repo}@${encodeURIComponent(p.revision)}${p.path ? `/${p.path}` : ''}`;

/** The Hub's address: HF_ENDPOINT, or https://huggingface.co. */
export const hfEndpoint = (env: NodeJS.ProcessEnv = process.env): string => (env.HF_ENDPOINT || 'https://huggingface.co').replace(/\/+$/, '');

/** Request headers for the Hub: the bearer token when HF_TOKEN is set. */
export const hfHeaders = (env: NodeJS.ProcessEnv = process.env): Record<string, string> => (env.HF_TOKEN ? { authorization: `Bearer ${env.HF_TOKEN}` } : {});

const encodePath = (path: string): string => path.split('/').map(encodeURIComponent).join('/');

/** The resolve URL of a file or folder (an HTTP store's base) of the dataset. */
export const hfResolveUrl = (p: HfPath, env: NodeJS.ProcessEnv = process.env): string =>
  `${hfEndpoint(env)}/datasets/${p.repo}/resolve/${encodeURIComponent(p.revision)}${p.path ? `/${encodePath(p.path)}` : ''}`;

async function hubJson(url: string, what: string, env: NodeJS.ProcessEnv): Promise<{ json: unknown; next?: string }> {
  const res = await fetch(url, { headers: { accept: 'application/json', ...hfHeaders(env) }, signal: AbortSignal.timeout(60_000) });
  if (!res.ok) {
    const hint = res.status === 401 || res.status === 403 ? (env.HF_TOKEN ? ' (HF_TOKEN was sent: does it have access to this dataset?)' : ' (a gated or private dataset: set HF_TOKEN)') : res.status === 404 ? ' (check the owner, name, revision and path)' : '';
    throw new Error(`${what}: the Hub answered ${res.status} for ${url}${hint}`);
  }
  const next = /<([^>]+)>;\s*rel="next"/.exec(res.headers.get('link') ?? '')?.[1];
  return { json: await res.json(), next };
}

/**
 * Revisions already pinned for this process: `<repo>@<revision>` → commit. Filled from an output's
 * `_plan.json` before planning (so a rerun reads the commits the output was started on), and by
 * every resolution, whose pins the plan then records.
 */
const pins = new Map<string, string>();

/** Takes pins recorded by an earlier plan. */
export function usePins(recorded: Record<string, string> | undefined): void {
  for (const [k, v] of Object.entries(recorded ?? {})) pins.set(k, v);
}

/** The pins resolved or taken so far in this process. */
export const pinsUsed = (): Record<string, string> => Object.fromEntries(pins);

/** The commit a revision (branch, tag or commit) stands at: as pinned for this output, or as the Hub says now. */
export async function resolveHfRevision(p: HfPath, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const key = `${p.repo}@${p.revision}`;
  const pinned = pins.get(key);
  if (pinned) return pinned;
  const url = `${hfEndpoint(env)}/api/datasets/${p.repo}/revision/${encodeURIComponent(p.revision)}`;
  const { json } = await hubJson(url, `hf://datasets/${p.repo}@${p.revision}`, env);
  const sha = (json as { sha?: unknown })?.sha;
  if (typeof sha !== 'string' || !/^[0-9a-f]{40}$/.test(sha)) throw new Error(`hf://datasets/${p.repo}@${p.revision}: the Hub's revision answer has no commit sha`);
  pins.set(key, sha);
  return sha;
}

/** The files under a folder of the dataset (recursive), as paths inside the repo, sorted; the Hub's paging followed. */
export async function listHfFiles(p: HfPath, env: NodeJS.ProcessEnv = process.env): Promise<string[]> {
  let url: string | undefined = `${hfEndpoint(env)}/api/datasets/${p.repo}/tree/${encodeURIComponent(p.revision)}${p.path ? `/${encodePath(p.path)}` : ''}?recursive=true`;
  const out: string[] = [];
  while (url) {
    const page: { json: unknown; next?: string } = await hubJson(url, hfUrl(p), env);
    if (!Array.isArray(page.json)) throw new Error(`${hfUrl(p)}: the Hub's tree answer is not a list`);
    for (const e of page.json as { type?: string; path?: string }[]) if (e.type === 'file' && typeof e.path === 'string') out.push(e.path);
    url = page.next;
  }
  return out.sort();
}
