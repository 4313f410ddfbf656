import { execFileSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TextBox, TextMeasures } from '../../stages/ocr/text-boxes.js';
import { repoRoot } from './run-cli.js';

/** One image of the OCR held-out set, as bench/ocr_heldout_set.py writes it in truth.json. */
export interface HeldoutImage {
  name: string;
  kind: string;
  background: string;
  width: number;
  height: number;
  /** Ink boxes of the drawn words (no confidence: they are truth). */
  words: (TextBox & { text: string })[];
  truth: TextMeasures;
}

/**
 * Writes `count` images of the held-out set (bench/ocr_heldout_set.py: Pillow, other faces,
 * sizes and vocabulary than text-images.ts) into `dir` as <name>.png, and returns their truth.
 */
export async function makeHeldoutSet(dir: string, count: number, seed: number): Promise<HeldoutImage[]> {
  // Debian's interpreter by path: its Pillow, numpy and scikit-image (a pyenv python may lack them).
  execFileSync('/usr/bin/python3', [join(repoRoot, 'bench', 'ocr_heldout_set.py'), dir, String(count), String(seed)], { stdio: 'inherit' });
  return JSON.parse(await readFile(join(dir, 'truth.json'), 'utf8')) as HeldoutImage[];
}
