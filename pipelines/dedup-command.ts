import { Command } from 'commander';
import { integerOption } from '../src/cli/option-parsers.js';
import { consoleLogger } from '../src/log.js';

/** `bitprep dedup <output>… --out DIR`: exact duplicates across outputs (stages/dedup/exact-dedup.ts). */
export function dedupCommand(): Command {
  return new Command('dedup')
    .argument('<outputs...>', 'image outputs (folders or s3:// prefixes), earliest first: a later copy of a picture is the one dropped')
    .requiredOption('--out <dir>', 'where the drop lists (drops/part-*.parquet) and summary.json go')
    .option('--partitions <n>', 'hash partitions on disk (default: from the outputs’ size, about 64 MiB each)', integerOption('--partitions', { min: 1 }))
    .option('--scratch <dir>', 'where the partitions go while the dedup runs (default: the system temp folder)')
    .option('--json', 'print the summary as JSON')
    .action(async (outputs: string[], o: { out: string; partitions?: number; scratch?: string; json?: boolean }) => {
      const { exactDedup } = await import('../stages/dedup/exact-dedup.js');
      const s = await exactDedup(outputs, o.out, consoleLogger, { partitions: o.partitions, scratch: o.scratch });
      if (o.json) process.stdout.write(JSON.stringify(s, null, 2) + '\n');
      else {
        process.stdout.write(`dedup: ${s.total_rows} rows in ${outputs.length} output(s), ${s.total_duplicates} exact duplicate(s) dropped (the earliest copy kept) → ${o.out}\n`);
        s.outputs.forEach((out, i) => process.stdout.write(`  ${out}: ${s.rows[i]} rows, ${s.duplicates[i]} dropped${s.no_digest[i] ? `, ${s.no_digest[i]} without a digest` : ''}\n`));
      }
    });
}
