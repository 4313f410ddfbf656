import { hfUrl, isHfUrl, listHfFiles, parseHfUrl, resolveHfRevision } from './hf-url.js';

/** Whether an input path is remote over HTTP: https://, http:// or hf://. */
export const isHttpInput = (path: string): boolean => path.startsWith('https://') || path.startsWith('http://') || isHfUrl(path);

/**
 * The input files an https:// or hf:// path stands for. An https:// URL is one file (a server
 * cannot be listed). An hf:// path is pinned to the commit its revision stands at now, so the plan
 * (and every rerun of it) reads those bytes; a folder expands to its files that `wanted` accepts.
 */
export async function expandHttpInput(path: string, wanted: (name: string) => boolean): Promise<string[]> {
  if (!isHfUrl(path)) {
    if (!wanted(path)) throw new Error(`${path}: an http(s) location cannot be listed; name its files (or use hf://datasets/… for a Hub dataset's folders)`);
    return [path];
  }
  const p = parseHfUrl(path);
  const pinned = { ...p, revision: await resolveHfRevision(p) };
  if (p.path && wanted(p.path)) return [hfUrl(pinned)];
  const files = (await listHfFiles(pinned)).filter(wanted);
  if (files.length === 0) throw new Error(`${path}: the Hub lists no matching files there`);
  return files.map((f) => hfUrl({ ...pinned, path: f }));
}
