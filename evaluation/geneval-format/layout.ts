import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { parseMetadata, type ParsedMetadata } from './metadata.js';

export interface GenevalImage {
  /** Path relative to the images root with `/` separators, e.g. `00012/samples/0003.png`: the detections file's key. */
  rel: string;
  /** The path as the official evaluator writes it in `filename`: os.path.join(imagedir, folder, "samples", name). */
  filename: string;
}

export interface GenevalPrompt {
  folder: string;
  metadata: ParsedMetadata;
  images: GenevalImage[];
}

const byNumber = (a: string, b: string) => a.localeCompare(b, 'en', { numeric: true });

/** os.path.join for one base: the base is kept as given (no normalisation), a separator is added only when missing. */
function pyJoin(base: string, rest: string): string {
  return base === '' || base.endsWith('/') ? base + rest : `${base}/${rest}`;
}

async function isKind(path: string, kind: 'dir' | 'file'): Promise<boolean> {
  try {
    const s = await stat(path);
    return kind === 'dir' ? s.isDirectory() : s.isFile();
  } catch {
    return false;
  }
}

/**
 * Reads a folder in GenEval's generation layout, `<dir>/<00000>/metadata.jsonl` and
 * `<dir>/<00000>/samples/<0000>.png`…, the way evaluate_images.py does: only all-digit folder
 * names count, and only files whose names *start* with `\d+\.png` (the official code uses
 * `re.match`, which anchors at the start only, so `0003.png.bak` counts there and here too).
 * Folders and images come in numeric order (the official order is os.listdir's, which is arbitrary).
 * A digit folder without a readable metadata.jsonl or samples/ is an error, as it is officially.
 */
export async function readGenevalLayout(dir: string): Promise<GenevalPrompt[]> {
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch (err) {
    throw new Error(`cannot read the images folder ${dir}: ${(err as Error).message}`);
  }
  const prompts: GenevalPrompt[] = [];
  for (const folder of entries.filter((e) => /^[0-9]+$/.test(e)).sort(byNumber)) {
    const folderPath = join(dir, folder);
    if (!(await isKind(folderPath, 'dir'))) continue;
    const metaPath = join(folderPath, 'metadata.jsonl');
    let text: string;
    try {
      text = await readFile(metaPath, 'utf8');
    } catch (err) {
      throw new Error(`${metaPath}: cannot read the prompt's metadata: ${(err as Error).message}`);
    }
    // json.load reads the whole file as one JSON value, so a second line is an error there too.
    const metadata = parseMetadata(text, metaPath);
    let names: string[];
    try {
      names = await readdir(join(folderPath, 'samples'));
    } catch (err) {
      throw new Error(`${join(folderPath, 'samples')}: cannot list the prompt's images: ${(err as Error).message}`);
    }
    const images: GenevalImage[] = [];
    for (const name of names.filter((n) => /^\d+\.png/.test(n)).sort(byNumber)) {
      if (!(await isKind(join(folderPath, 'samples', name), 'file'))) continue;
      const rel = `${folder}/samples/${name}`;
      images.push({ rel, filename: pyJoin(dir, rel) });
    }
    prompts.push({ folder, metadata, images });
  }
  return prompts;
}
