import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Command } from 'commander';
import { integerOption } from '../src/cli/option-parsers.js';
import { openStore } from '../src/stores/open-store.js';
import { collectReport } from './report/collect.js';
import { renderReport } from './report/html.js';

const REPORT_NAME = 'report.html';

/**
 * `bitprep report <output>`: one self-contained HTML page (no network) to judge a run's thresholds
 * by eye: funnel, histograms with the thresholds marked, latent bit usage, throughput, and grids
 * of kept and dropped images.
 */
export function reportCommand(): Command {
  return new Command('report')
    .argument('<output>', 'output directory or s3://bucket/prefix')
    .option('--out <file>', `local HTML file to write (default: ${REPORT_NAME} inside the output, local or s3)`)
    .option('--thumbnails <n>', 'images per grid: kept, and each drop reason', integerOption('--thumbnails', { min: 0, max: 1000 }), 24)
    .action(async (output: string, o: { out?: string; thumbnails: number }) => {
      const store = openStore(output);
      const html = await renderReport(await collectReport(store, { thumbnails: o.thumbnails }));
      const bytes = Buffer.byteLength(html);
      let where: string;
      if (o.out) {
        await writeFile(o.out, html);
        where = o.out;
      } else {
        await store.put(REPORT_NAME, html);
        where = output.startsWith('s3://') ? `${output.replace(/\/+$/, '')}/${REPORT_NAME}` : join(output, REPORT_NAME);
      }
      process.stdout.write(`${where} (${(bytes / 1024).toFixed(0)} KiB)\n`);
    });
}
