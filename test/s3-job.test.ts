import { HeadObjectCommand } from '@aws-sdk/client-s3';
import { randomBytes } from 'node:crypto';
import { writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readTarEntries } from '../src/formats/tar-read.js';
import { S3Store, s3ClientFromEnv } from '../src/stores/s3-store.js';
import { readAllRecords } from './helpers/read-output.js';
import { runCli, writeConfig } from './helpers/run-cli.js';
import { startS3Server, type S3Server } from './helpers/s3-server.js';
import { tempDir } from './helpers/temp-dir.js';

describe('a job writing to s3:// (s3rver on 127.0.0.1)', () => {
  let s3: S3Server;
  let dir: string;
  beforeAll(async () => {
    s3 = await startS3Server({ buckets: ['bitprep-test'] });
    dir = await tempDir('s3job');
    await mkdir(join(dir, 'imgs'));
    // Noise does not compress: 24 PNG-losslessly kept 512² noise images make a shard over 5 MB.
    for (let i = 0; i < 24; i++) {
      const noise = randomBytes(512 * 512 * 3);
      await sharp(noise, { raw: { width: 512, height: 512, channels: 3 } }).png().toFile(join(dir, 'imgs', `n${String(i).padStart(2, '0')}.png`));
      await writeFile(join(dir, 'imgs', `n${String(i).padStart(2, '0')}.txt`), `noise ${i}`);
    }
  });
  afterAll(async () => s3?.close());

  it('writes shards (one over 5 MB, by multipart upload), records and done markers, and reads them back', async () => {
    const config = await writeConfig(dir, 'job.json', {
      job: 'image-shards',
      output: 's3://bitprep-test/runs/one',
      input: { kind: 'folder', path: join(dir, 'imgs'), unit_rows: 24 },
      image: { size: 512, mode: 'none', format: 'png' },
    });
    const run = await runCli(['run', config, '--progress', 'off'], { env: s3.env });
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/written\s+24/);

    const prev = { ...process.env };
    Object.assign(process.env, s3.env);
    try {
      const store = S3Store.fromUrl('s3://bitprep-test/runs/one');
      const names = await store.list();
      // The run's log entry stays; its lease was released (deleted) when it ended.
      expect(names.filter((n) => !n.startsWith('_runs/'))).toEqual(['00000.done.json', '00000.parquet', '00000.stats.json', '00000.tar', '_config.json', '_plan.json', 'run-summary.json']);
      expect(names.filter((n) => n.startsWith('_runs/'))).toHaveLength(1);
      const size = (await store.size('00000.tar'))!;
      expect(size).toBeGreaterThan(5 * 1024 * 1024);
      // s3rver tags multipart objects with a plain MD5, so prove the protocol from its request log:
      // the shard went up as CreateMultipartUpload + several UploadPart + CompleteMultipartUpload.
      const tarRequests = s3.requests.filter((r) => r.includes('/runs/one/00000.tar'));
      expect(tarRequests.some((r) => r.startsWith('POST') && /[?&]uploads\b/.test(r))).toBe(true);
      expect(tarRequests.filter((r) => r.startsWith('PUT') && /partNumber=/.test(r)).length).toBeGreaterThanOrEqual(2);
      expect(tarRequests.some((r) => r.startsWith('POST') && /uploadId=/.test(r))).toBe(true);
      const head = await s3ClientFromEnv().send(new HeadObjectCommand({ Bucket: 'bitprep-test', Key: 'runs/one/00000.tar' }));
      expect(head.ContentLength).toBe(size);
      const members: string[] = [];
      for await (const e of readTarEntries(await store.getStream('00000.tar'), { name: '00000.tar' })) members.push(e.path);
      expect(members.filter((m) => m.endsWith('.png'))).toHaveLength(24);
      const records = await readAllRecords(store);
      expect(records.map((r) => r.status)).toEqual(Array(24).fill('ok'));
      expect(records[3].caption).toBe('noise 3');
      const marker = JSON.parse(new TextDecoder().decode(await store.get('00000.done.json')));
      expect(marker.outputs.find((o: { name: string }) => o.name === '00000.tar').bytes).toBe(size);

      // A rerun finds the done marker in the bucket and does nothing.
      const again = await runCli(['run', config, '--progress', 'off'], { env: s3.env });
      expect(again.code, again.stderr).toBe(0);
      expect(again.stderr).toMatch(/1 unit\(s\) already done, 0 to run/);
    } finally {
      process.env = prev;
    }
  });
});
