import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { GENEVAL_OBJECT_NAMES } from '../evaluation/geneval/detector.js';

/**
 * Small prompt files in the real formats for the demo's evaluation run: GenEval's
 * evaluation_metadata.jsonl (one line per prompt, every tag), ImageReward's
 * benchmark-prompts.json and a COCO caption list. Written by code because the real files are
 * fetched on request only (`bitprep fetch-assets`), never shipped.
 */
export interface DemoEvalPrompts {
  geneval: string;
  objectNames: string;
  imagereward: string;
  coco: string;
}

// The first lines of each GenEval task, in GenEval's own shapes: includes with counts, colors and
// positions, and the counting task's exclude clause.
const GENEVAL: Record<string, unknown>[] = [
  { tag: 'single_object', include: [{ class: 'bench', count: 1 }], prompt: 'a photo of a bench' },
  { tag: 'single_object', include: [{ class: 'cow', count: 1 }], prompt: 'a photo of a cow' },
  { tag: 'two_object', include: [{ class: 'toilet', count: 1 }, { class: 'computer mouse', count: 1 }], prompt: 'a photo of a toilet and a computer mouse' },
  { tag: 'two_object', include: [{ class: 'bus', count: 1 }, { class: 'clock', count: 1 }], prompt: 'a photo of a bus and a clock' },
  { tag: 'counting', include: [{ class: 'clock', count: 2 }], exclude: [{ class: 'clock', count: 3 }], prompt: 'a photo of two clocks' },
  { tag: 'counting', include: [{ class: 'cow', count: 3 }], exclude: [{ class: 'cow', count: 4 }], prompt: 'a photo of three cows' },
  { tag: 'colors', include: [{ class: 'bus', count: 1, color: 'blue' }], prompt: 'a photo of a blue bus' },
  { tag: 'colors', include: [{ class: 'clock', count: 1, color: 'red' }], prompt: 'a photo of a red clock' },
  { tag: 'position', include: [{ class: 'bench', count: 1 }, { class: 'cow', count: 1, position: ['left of', 0] }], prompt: 'a photo of a cow left of a bench' },
  { tag: 'position', include: [{ class: 'bus', count: 1 }, { class: 'clock', count: 1, position: ['above', 0] }], prompt: 'a photo of a clock above a bus' },
  { tag: 'color_attr', include: [{ class: 'bench', count: 1, color: 'green' }, { class: 'cow', count: 1, color: 'brown' }], prompt: 'a photo of a green bench and a brown cow' },
  { tag: 'color_attr', include: [{ class: 'bus', count: 1, color: 'yellow' }, { class: 'clock', count: 1, color: 'white' }], prompt: 'a photo of a yellow bus and a white clock' },
];


const IMAGEREWARD = [
  'a lighthouse on a cliff at sunset, oil painting',
  'a cyberpunk street market in the rain, neon signs, cinematic',
  'a watercolor fox sleeping under a maple tree',
  'portrait of an old sailor with a white beard, dramatic lighting',
  'a bowl of ramen on a wooden table, studio photo',
  'an astronaut riding a horse on the moon, digital art',
];

const COCO = [
  'A man riding a wave on top of a surfboard.',
  'A plate of food with broccoli and rice.',
  'Two giraffes standing next to each other in a field.',
  'A red double decker bus driving down a street.',
  'A cat sitting on top of a laptop computer.',
  'A kitchen with wooden cabinets and a white refrigerator.',
  'A group of people flying kites on a beach.',
  'A clock tower in the middle of a city square.',
  'A bowl of oranges and bananas on a table.',
  'A dog lying on a couch next to a pillow.',
  'A train traveling down tracks next to a forest.',
  'A young boy swinging a baseball bat at a ball.',
];

/** Writes the demo's prompt files under `dir`; returns their paths. */
export async function writeDemoEvalPrompts(dir: string): Promise<DemoEvalPrompts> {
  await mkdir(dir, { recursive: true });
  const paths: DemoEvalPrompts = {
    geneval: join(dir, 'evaluation_metadata.jsonl'),
    objectNames: join(dir, 'object_names.txt'),
    imagereward: join(dir, 'benchmark-prompts.json'),
    coco: join(dir, 'coco-captions.txt'),
  };
  await writeFile(paths.geneval, GENEVAL.map((l) => JSON.stringify(l)).join('\n') + '\n');
  await writeFile(paths.objectNames, GENEVAL_OBJECT_NAMES.join('\n') + '\n');
  await writeFile(paths.imagereward, JSON.stringify(IMAGEREWARD.map((prompt, i) => ({ id: String(i).padStart(6, '0'), prompt })), null, 2));
  await writeFile(paths.coco, COCO.join('\n') + '\n');
  return paths;
}
