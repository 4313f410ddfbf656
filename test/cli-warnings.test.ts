import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { printWarningsOnOneLine } from '../src/cli/process-warnings.js';
import { startCli } from './helpers/run-cli.js';
import { startS3Server, type S3Server } from './helpers/s3-server.js';

describe('warnings on the terminal', () => {
  let s3: S3Server;
  beforeAll(async () => {
    s3 = await startS3Server({ buckets: ['warn'] });
  });
  afterAll(async () => s3?.close());

  it('an S3 command on Node 20 prints no AWS SDK notice block', async () => {
    const env = { ...s3.env, BITPREP_DEBUG: '', AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: '' };
    const r = await startCli(['summary', 's3://warn/nothing-here'], { env }).done;
    // The command itself fails (no run there); what matters is what else reached the terminal.
    expect(r.stderr).toMatch(/error: /);
    expect(r.stderr).not.toMatch(/NodeVersionSupportWarning|\(node:\d+\)|--trace-warnings/);
  });

  it('prints any other warning as one line, name first', async () => {
    const saved = process.listeners('warning');
    const sink = new PassThrough();
    let text = '';
    sink.on('data', (d) => (text += d));
    const debug = process.env.BITPREP_DEBUG;
    delete process.env.BITPREP_DEBUG;
    try {
      printWarningsOnOneLine(sink);
      process.emitWarning('first line\nsecond line\nthird', 'SomeLibraryWarning');
      await new Promise((r) => setImmediate(r));
      expect(text).toBe('warning: SomeLibraryWarning: first line\n');
    } finally {
      process.removeAllListeners('warning');
      for (const l of saved) process.on('warning', l);
      if (debug !== undefined) process.env.BITPREP_DEBUG = debug;
    }
  });
});
