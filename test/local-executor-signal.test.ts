import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { validateConfig } from '../src/config/load-config.js';
import { executeLocal } from '../src/executors/local.js';
import type { AnyJob, JobSession } from '../src/job.js';
import { silentLogger } from '../src/log.js';
import { FileStore } from '../src/stores/file-store.js';
import { generateDemoData } from '../pipelines/demo-data.js';
import { jobs } from '../pipelines/index.js';
import { tempDir } from './helpers/temp-dir.js';

describe('the local executor\'s stop signal', () => {
  it('carries hundreds of in-flight listeners (one per request) without a MaxListenersExceededWarning', async () => {
    const dir = await tempDir('signal');
    await generateDemoData(join(dir, 'data'), 8);
    const { job, config } = validateConfig({ job: 'image-shards', output: join(dir, 'out'), input: { kind: 'parquet', paths: [join(dir, 'data', 'laion')], unit_rows: 64 }, image: { size: 64, min_edge: 8 } }, 'test', jobs);
    // The job as it is, with a unit that does what 300 concurrent model requests do to the signal.
    const busy: AnyJob = {
      ...job,
      open: (cfg, log) => {
        const session: JobSession = job.open(cfg, log);
        return {
          ...session,
          run: async (unit, ctx) => {
            const listeners = Array.from({ length: 300 }, () => () => undefined);
            for (const l of listeners) ctx.signal!.addEventListener('abort', l, { once: true });
            await new Promise((r) => setTimeout(r, 10));
            for (const l of listeners) ctx.signal!.removeEventListener('abort', l);
            return session.run(unit, ctx);
          },
        };
      },
    };
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(`${w.name}: ${w.message}`);
    process.on('warning', onWarning);
    try {
      const units = await busy.plan(config, silentLogger);
      const summary = await executeLocal(busy, config, units, { output: new FileStore(config.output), log: silentLogger, progress: 'off' });
      expect(summary.units.done).toBe(units.length);
      await new Promise((r) => setImmediate(r));
    } finally {
      process.off('warning', onWarning);
    }
    expect(warnings.filter((w) => w.startsWith('MaxListenersExceededWarning'))).toEqual([]);
  });
});
