import { writeFile } from 'node:fs/promises';
import { Command } from 'commander';
import { integerOption, numberOption } from '../src/cli/option-parsers.js';
import { LATENT_BYTES } from '../src/formats/latent-bits.js';
import { readLatentManifest, readLatents, type LatentManifest } from '../src/formats/latent-shards.js';
import { consoleLogger } from '../src/log.js';
import { openStore } from '../src/stores/open-store.js';
import type { Store } from '../src/stores/store.js';
import { duplicatesToDrop, findNearDuplicates } from '../stages/latent-dedup.js';
import { latentToPng } from '../stages/latent-picture.js';
import { formatLatentStats, LatentStats } from '../stages/latent-stats.js';

async function open(dataset: string): Promise<{ store: Store; manifest: LatentManifest }> {
  const store = openStore(dataset);
  return { store, manifest: await readLatentManifest(store) };
}

/** `bitprep latents stats|dedup|show`: look at a latent dataset (pre-encode or training-mix output). */
export function latentsCommand(): Command {
  const cmd = new Command('latents');

  cmd
    .command('stats')
    .description('per bit and per token: fraction of ones, entropy, constant and dead bits; ones per image; a code-collapse verdict')
    .argument('<dataset>', 'latent dataset: folder or s3:// prefix holding index.json')
    .option('--epsilon <e>', 'a bit is dead when its fraction of ones is below e or above 1 − e', numberOption('--epsilon', { min: 0, max: 0.4999 }))
    .option('--json', 'print the full result as JSON')
    .action(async (dataset: string, o: { epsilon?: number; json?: boolean }) => {
      const { store, manifest } = await open(dataset);
      const stats = new LatentStats({ epsilon: o.epsilon });
      for await (const { latent } of readLatents(store, manifest)) stats.add(latent);
      const r = stats.result();
      const views = manifest.views ?? 1;
      // With views, every crop's latent is counted: they are all what the model trains on.
      process.stdout.write(o.json ? JSON.stringify({ ...r, views }, null, 2) + '\n' : `${dataset}: ${manifest.shards.length} shard(s)${views > 1 ? `, ${views} views per image (every view counted)` : ''}\n${formatLatentStats(r)}\n`);
    });

  cmd
    .command('dedup')
    .description("find near duplicates by Hamming distance (multi-index hashing, exact) and report their clusters; with views, each image's view 0")
    .argument('<dataset>', 'latent dataset: folder or s3:// prefix holding index.json')
    .option('-t, --threshold <bits>', 'largest Hamming distance (of 8192 bits) that makes two latents near duplicates', integerOption('--threshold', { min: 0, max: 255 }), 16)
    .option('--out <file>', 'write the clusters and the keys a drop policy removes (all but the first of each cluster) as JSON')
    .action(async (dataset: string, o: { threshold: number; out?: string }) => {
      const { store, manifest } = await open(dataset);
      // One contiguous buffer: 1 KiB per latent, the index adds tens of bytes.
      const images = manifest.rows / (manifest.views ?? 1);
      const all = new Uint8Array(images * LATENT_BYTES);
      const keys: string[] = [];
      for await (const { key, latent } of readLatents(store, manifest, { firstView: true })) {
        if (keys.length >= images) throw new Error(`${dataset}: the shards hold more images than index.json says (${images})`);
        all.set(latent, keys.length * LATENT_BYTES);
        keys.push(key);
      }
      const t0 = performance.now();
      const r = findNearDuplicates(all.subarray(0, keys.length * LATENT_BYTES), { threshold: o.threshold });
      const seconds = (performance.now() - t0) / 1000;
      const drop = duplicatesToDrop(r.clusters).map((i) => keys[i]);
      process.stdout.write(`${keys.length} latents, threshold ${o.threshold} bits: ${r.pairs.length} pair(s) in ${r.clusters.length} cluster(s); a drop policy removes ${drop.length} (keeps the first of each) [${seconds.toFixed(1)} s]\n`);
      for (const c of r.clusters.slice(0, 10)) process.stdout.write(`  ${c.map((i) => keys[i]).join(', ')}\n`);
      if (r.clusters.length > 10) process.stdout.write(`  … ${r.clusters.length - 10} more\n`);
      if (o.out) {
        const report = { dataset, threshold: o.threshold, latents: keys.length, clusters: r.clusters.map((c) => c.map((i) => keys[i])), pairs: r.pairs.map(([i, j, d]) => [keys[i], keys[j], d]), drop };
        await writeFile(o.out, JSON.stringify(report, null, 2) + '\n');
        consoleLogger.info(`report: ${o.out}`);
      }
    });

  cmd
    .command('show')
    .description('write one latent as a 128-row × 64-column picture (row = token, white = 1)')
    .argument('<dataset>', 'latent dataset: folder or s3:// prefix holding index.json')
    .argument('<key>', 'the sample key')
    .option('--out <file>', 'PNG to write', 'latent.png')
    .option('--scale <n>', 'pixels per bit', integerOption('--scale', { min: 1, max: 64 }), 4)
    .option('--view <v>', 'which view (crop) of the image, in datasets encoded with views', integerOption('--view'), 0)
    .action(async (dataset: string, key: string, o: { out: string; scale: number; view: number }) => {
      const { store, manifest } = await open(dataset);
      for await (const x of readLatents(store, manifest)) {
        if (x.key !== key || x.view !== o.view) continue;
        await writeFile(o.out, await latentToPng(x.latent, { scale: o.scale }));
        process.stdout.write(`${key} → ${o.out} (${64 * o.scale}×${128 * o.scale})\n`);
        return;
      }
      throw new Error(`${dataset}: no latent with key ${JSON.stringify(key)}${o.view > 0 ? ` and view ${o.view}` : ''}`);
    });

  return cmd;
}
