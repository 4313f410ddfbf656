import { describe, expect, it } from 'vitest';
import { summarizeOutput } from '../src/run-summary.js';
import { emptyFunnel } from '../src/stats.js';
import { FileStore } from '../src/stores/file-store.js';
import { UnitOutputs } from '../src/units/unit-outputs.js';
import { readUnitStats, statsName } from '../src/units/unit.js';
import { tempDir } from './helpers/temp-dir.js';

describe('unit stats files', () => {
  it('reads the stage counts of outputs written before they had their name (`units`), and sums them with new ones', async () => {
    const store = new FileStore(await tempDir('unit-files'));
    const funnel = { ...emptyFunnel(), rows_in: 3, written: 3 };
    const stage = (counts: Record<string, number>) => ({ name: 'decode-resize', in: 3, ok: 3, dropped: 0, failed: 0, busySeconds: 0.5, counts });
    await new UnitOutputs(store, 'image-shards', '00000').finish({ started: new Date(), funnel, stages: [stage({ images: 3, bytes_in: 100 })] });
    await new UnitOutputs(store, 'image-shards', '00001').finish({ started: new Date(), funnel, stages: [stage({ images: 3, bytes_in: 50 })] });
    // Unit 00001 as an older version wrote it: the same stats with `units` for `counts`.
    const written = JSON.parse(new TextDecoder().decode(await store.get(statsName('00001'))));
    written.stages[0].units = written.stages[0].counts;
    delete written.stages[0].counts;
    await store.put(statsName('00001'), JSON.stringify(written));

    const old = await readUnitStats(store, '00001');
    expect(old.stages[0].counts).toEqual({ images: 3, bytes_in: 50 });
    expect(old.stages[0]).not.toHaveProperty('units');
    const summary = await summarizeOutput(store, 'image-shards', [{ id: '00000', inputs: [] }, { id: '00001', inputs: [] }]);
    expect(summary.stages.find((s) => s.name === 'decode-resize')?.counts).toEqual({ images: 6, bytes_in: 150 });
  });
});
