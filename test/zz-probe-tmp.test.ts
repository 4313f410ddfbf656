import { it, expect } from 'vitest';
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { S3Client } from '@aws-sdk/client-s3';
import { S3Store } from '/work/main/src/stores/s3-store.js';
import { startS3Server } from '/work/main/test/helpers/s3-server.js';

it('default checksums vs s3rver', async () => {
  const s3 = await startS3Server({ buckets: ['b'] });
  try {
    const client = new S3Client({ region: 'us-east-1', endpoint: s3.endpoint, forcePathStyle: true,
      credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });
    const store = S3Store.fromUrl('s3://b/p', { client, partSize: 5 * 1024 * 1024 });
    for (const [label, f] of [['put', async () => { await store.put('x', 'hello'); return await store.get('x'); }],
      ['multipart', async () => { const w = await store.putStream('y'); const d = randomBytes(6 << 20); await w.write(d); await w.close(); const g = await store.get('y'); return Buffer.compare(Buffer.from(g), d) === 0 ? 'same' : `differs len ${g.length}`; }]] as const) {
      try { const r = await f(); console.log(label, 'OK', typeof r === 'string' ? r : Buffer.from(r).toString().slice(0, 80)); } catch (e) { console.log(label, 'FAIL', (e as Error).message); }
    }
    const out = execFileSync('npx', ['tsx', '/tmp/s3probe/child.mts'],
      { env: { ...process.env, ...s3.env }, encoding: 'utf8' });
    console.log('child:', out);
    expect(await S3Store.fromUrl('s3://b/child', { client }).list()).toEqual(['a/b.txt']);
  } finally { await s3.close(); }
});
