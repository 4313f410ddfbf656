import { Command } from 'commander';
import { integerOption, numberOption } from '../src/cli/option-parsers.js';
import { consoleLogger } from '../src/log.js';
import { MAX_HAMMING_BITS } from '../stages/dedup/hamming-bands.js';

/** `bitprep dedup <output>… --out DIR`: exact and near duplicates across outputs (stages/dedup/dedup-run.ts). */
export function dedupCommand(): Command {
  return new Command('dedup')
    .argument('<outputs...>', 'image outputs (folders or s3:// prefixes), earliest first: a later copy of a picture is the one dropped')
    .requiredOption('--out <dir>', 'where the drop lists (drops/part-*.parquet), the views (view/<i>/<unit>.parquet) and summary.json go')
    .option('--phash <bits>', 'also drop near copies: stored images whose 64-bit perceptual hashes (imagehash phash) differ in at most this many bits (0–12; 4–8 typical)', integerOption('--phash', { min: 0, max: MAX_HAMMING_BITS }))
    .option('--embeddings <cosine>', 'also drop near copies: rows whose saved CLIP image embeddings (laion-filter embeddings:) have at least this cosine similarity (e.g. 0.95)', numberOption('--embeddings', { min: 0, max: 1 }))
    .option('--clip <model>', 'compute the --embeddings from the stored images with this CLIP image tower (an .onnx file, or KServe v2 model URLs, comma-separated) instead of reading saved ones')
    .option('--clusters <n>', 'k-means clusters the embeddings are compared within (default √rows; 1 compares every pair)', integerOption('--clusters', { min: 1 }))
    .option('--partitions <n>', 'hash partitions on disk (default: from the outputs’ size, about 64 MiB each)', integerOption('--partitions', { min: 1 }))
    .option('--scratch <dir>', 'where the partitions go while the dedup runs (default: the system temp folder)')
    .option('--json', 'print the summary as JSON')
    .action(async (outputs: string[], o: { out: string; phash?: number; embeddings?: number; clip?: string; clusters?: number; partitions?: number; scratch?: string; json?: boolean }) => {
      if (o.embeddings === 0) throw new Error('--embeddings 0 would call every pair a copy; give a similarity above 0');
      if ((o.clusters !== undefined || o.clip !== undefined) && o.embeddings === undefined) throw new Error('--clusters and --clip apply to --embeddings');
      const { runDedup } = await import('../stages/dedup/dedup-run.js');
      const s = await runDedup(outputs, o.out, consoleLogger, { phash: o.phash, embeddings: o.embeddings, clip: o.clip, clusters: o.clusters, partitions: o.partitions, scratch: o.scratch });
      if (o.json) process.stdout.write(JSON.stringify(s, null, 2) + '\n');
      else {
        const near = s.methods.phash !== null || s.methods.embeddings !== null ? `, ${s.total_near_duplicates} near duplicate(s)` : '';
        process.stdout.write(`dedup: ${s.total_rows} rows in ${outputs.length} output(s), ${s.total_duplicates} exact duplicate(s)${near} dropped (the earliest copy kept) → ${o.out}\n`);
        s.outputs.forEach((out, i) => process.stdout.write(`  ${out}: ${s.rows[i]} rows, ${s.duplicates[i]} exact${near ? ` + ${s.near_duplicates[i]} near` : ''} dropped${s.no_digest[i] ? `, ${s.no_digest[i]} without a digest` : ''}; view: ${o.out.replace(/\/+$/, '')}/${s.views[i]}\n`));
      }
    });
}
