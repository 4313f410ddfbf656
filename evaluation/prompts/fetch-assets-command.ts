import { Command } from 'commander';
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { ASSETS, selectAssets, type Asset } from './assets.js';

/** What fetchAssets did with one asset. */
export interface FetchResult {
  name: string;
  action: 'downloaded' | 'skipped';
  path: string;
  sha256: string;
  size: number;
  /** Set when the file could not be checked against a pinned hash. */
  note?: string;
}

export interface FetchAssetsOptions {
  dir: string;
  /** Names to fetch; all pinned assets when empty (unpinned ones must be named). */
  names?: string[];
  allowUnpinned?: boolean;
  /** The registry to use; tests point entries at a local server. */
  registry?: readonly Asset[];
  log?: (line: string) => void;
}

async function hashFile(path: string): Promise<{ sha256: string; size: number }> {
  const h = createHash('sha256');
  let size = 0;
  for await (const chunk of createReadStream(path)) {
    h.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { sha256: h.digest('hex'), size };
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return false;
      throw err;
    },
  );
}

/**
 * Downloads registry assets into `dir`, the only place bitprep touches the network for evaluation
 * files. Each download goes to a temp file beside its target and is renamed into place only after
 * its size and SHA-256 match, so an interrupted or tampered download never leaves a file that
 * looks valid. Files already present with the pinned hash are skipped without a request; a present
 * file with another hash is an error, as it may be the user's own.
 */
export async function fetchAssets(opts: FetchAssetsOptions): Promise<FetchResult[]> {
  const registry = opts.registry ?? ASSETS;
  const log = opts.log ?? (() => {});
  const names = opts.names ?? [];
  const assets = names.length > 0 ? selectAssets(registry, names) : registry.filter((a) => a.sha256 !== null);
  const unpinned = assets.filter((a) => a.sha256 === null || a.size === null);
  // Checked before any download so a refused run changes nothing.
  if (unpinned.length > 0 && !opts.allowUnpinned) {
    throw new Error(`no pinned SHA-256 for ${unpinned.map((a) => a.name).join(', ')}: pass --allow-unpinned to download without verification`);
  }
  await mkdir(opts.dir, { recursive: true });
  const results: FetchResult[] = [];
  for (const asset of assets) {
    const r = await fetchOne(asset, opts.dir);
    log(`${r.action} ${r.name} → ${r.path} (${r.size} bytes, sha256 ${r.sha256})${r.note ? ` — ${r.note}` : ''}`);
    results.push(r);
  }
  return results;
}

async function fetchOne(asset: Asset, dir: string): Promise<FetchResult> {
  const path = join(dir, asset.name);
  const pinned = asset.sha256 !== null && asset.size !== null;
  if (await exists(path)) {
    const got = await hashFile(path);
    if (!pinned) return { name: asset.name, action: 'skipped', path, ...got, note: 'already present; unpinned, so not verified' };
    if (got.sha256 !== asset.sha256 || got.size !== asset.size) {
      throw new Error(`${path} exists but does not match the registry: expected sha256 ${asset.sha256} (${asset.size} bytes), got ${got.sha256} (${got.size} bytes); remove it to download again`);
    }
    return { name: asset.name, action: 'skipped', path, ...got };
  }
  const tmp = join(dir, `.${asset.name}.${process.pid}.partial`);
  try {
    const res = await fetch(asset.url, { redirect: 'follow' });
    if (!res.ok || !res.body) throw new Error(`${asset.name}: GET ${asset.url} failed: HTTP ${res.status} ${res.statusText}`);
    const h = createHash('sha256');
    let size = 0;
    await pipeline(
      Readable.fromWeb(res.body as unknown as WebReadableStream<Uint8Array>),
      async function* (src: AsyncIterable<Buffer>) {
        for await (const chunk of src) {
          size += chunk.length;
          // Stops a wrong or hostile response early instead of filling the disk before the check.
          if (asset.size !== null && size > asset.size) throw new Error(`${asset.name}: download from ${asset.url} is larger than the expected ${asset.size} bytes; refused`);
          h.update(chunk);
          yield chunk;
        }
      },
      createWriteStream(tmp),
    );
    const sha256 = h.digest('hex');
    if (pinned && (sha256 !== asset.sha256 || size !== asset.size)) {
      throw new Error(`${asset.name}: download from ${asset.url} does not match the registry: expected sha256 ${asset.sha256} (${asset.size} bytes), got ${sha256} (${size} bytes); refused, nothing written`);
    }
    await rename(tmp, path);
    return { name: asset.name, action: 'downloaded', path, sha256, size, note: pinned ? undefined : 'unpinned: compare the hash with a trusted source' };
  } finally {
    await rm(tmp, { force: true });
  }
}

/** Prints the registry, one asset per block. */
export function formatRegistry(registry: readonly Asset[]): string {
  return registry
    .map((a) => `${a.name}\n  ${a.description}\n  url:    ${a.url}\n  sha256: ${a.sha256 ?? 'unpinned (needs --allow-unpinned)'}\n  size:   ${a.size ?? 'unknown'}`)
    .join('\n') + '\n';
}

/** `bitprep fetch-assets [names...] --dir DIR`: the explicit, opt-in download of evaluation prompt files. */
export function fetchAssetsCommand(registry: readonly Asset[] = ASSETS): Command {
  return new Command('fetch-assets')
    .argument('[names...]', 'asset names (see --list); default: every pinned asset')
    .option('--dir <dir>', 'directory the files are written to, as DIR/<name>')
    .option('--allow-unpinned', 'also download assets without a pinned hash (printed afterwards, not verified)', false)
    .option('--list', 'print the registry and exit', false)
    .action(async (names: string[], o: { dir?: string; allowUnpinned: boolean; list: boolean }) => {
      if (o.list) {
        process.stdout.write(formatRegistry(names.length > 0 ? selectAssets(registry, names) : registry));
        return;
      }
      if (!o.dir) throw new Error('fetch-assets: --dir <dir> is required');
      const results = await fetchAssets({ dir: o.dir, names, allowUnpinned: o.allowUnpinned, registry, log: (l) => process.stdout.write(`${l}\n`) });
      const got = results.filter((r) => r.action === 'downloaded').length;
      process.stdout.write(`${got} downloaded, ${results.length - got} already present, in ${o.dir}\n`);
    });
}
