import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeParquet } from '../src/formats/parquet-write.js';
import { ImageHosts } from './helpers/image-hosts.js';
import { startRedisServer, type RedisServer } from './helpers/redis-server.js';
import { runCli, writeConfig } from './helpers/run-cli.js';
import { tempDir } from './helpers/temp-dir.js';

/**
 * A queue worker honours the run contract: an outage is not the unit's fault, so the unit goes
 * back to the queue without using one of its attempts (it must not be dead-lettered for a network
 * that is down), the worker stops and exits 1 naming the outage, and a worker started after the
 * fix finishes the output.
 */
describe('queue worker during an outage', () => {
  let dir: string;
  let redis: RedisServer;
  let hosts: ImageHosts;
  let config: string;

  beforeAll(async () => {
    dir = await tempDir('queue-outage');
    redis = await startRedisServer();
    const images = new Map<string, Buffer>();
    for (let i = 0; i < 16; i++) images.set(`q${i}.jpg`, await sharp({ create: { width: 80, height: 64, channels: 3, background: { r: 16 * i, g: 100, b: 200 - 8 * i } } }).jpeg().toBuffer());
    hosts = await ImageHosts.start(4, images);
    const rows = Array.from({ length: 16 }, (_, i) => ({ URL: hosts.url(i, `q${i}.jpg`), TEXT: `picture ${i}` }));
    const input = join(dir, 'in.parquet');
    await writeFile(input, writeParquet(rows, { schema: [{ name: 'URL', type: 'STRING' }, { name: 'TEXT', type: 'STRING' }] }));
    config = await writeConfig(dir, 'job.json', {
      job: 'laion-filter',
      output: join(dir, 'out'),
      input: { kind: 'parquet', paths: [input], unit_rows: 8 },
      fetch: { concurrency: 2, retries: 0, allow_addresses: ['127.0.0.1/32'] },
      image: { size: 48, min_edge: 32 },
      breaker: { network_failures: 4, network_min_hosts: 2 },
      thumbnails: { dropped_per_unit: 0 },
    });
  });
  afterAll(async () => {
    await hosts?.stop();
    await redis?.stop();
  });

  it('puts the unit back without using an attempt, exits 1 naming the outage, and a later worker finishes', async () => {
    const queue = ['--queue', redis.url];
    const plan = await runCli(['plan', config, ...queue, '--attempts', '1', '--json']);
    expect(plan.code, plan.stderr).toBe(0);
    expect(JSON.parse(plan.stdout)).toMatchObject({ planned: 2, enqueued: 2 });

    await hosts.stop();
    const worker = ['worker', ...queue, '--exit-when-empty', '--lock-ms', '1000', '--concurrency', '1', '--progress', 'off'];
    const down = await runCli(worker);
    expect(down.code, down.stderr).toBe(1);
    expect(down.stderr).toMatch(/worker stopped by an outage of the network/);
    expect(down.stderr).not.toMatch(/dead-letter list/);
    const status = JSON.parse((await runCli(['status', ...queue, '--json'])).stdout);
    // With attempts 1, a counted attempt would have dead-lettered the unit: none is failed or dead.
    expect(status.counts).toMatchObject({ failed: 0, completed: 0 });
    expect(status.counts.waiting + status.counts.delayed).toBe(2);
    expect(status.dead).toEqual([]);
    expect((await readdir(join(dir, 'out'))).filter((n) => n.endsWith('.done.json'))).toEqual([]);

    await hosts.restart();
    const up = await runCli(worker);
    expect(up.code, up.stderr).toBe(0);
    expect((await readdir(join(dir, 'out'))).filter((n) => n.endsWith('.done.json')).sort()).toEqual(['00000.done.json', '00001.done.json']);
  });
});
