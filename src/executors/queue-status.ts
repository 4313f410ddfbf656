import { Queue } from 'bullmq';
import { openStore } from '../stores/open-store.js';
import { readPlan } from './local.js';
import { connect, doneUnitIds, maskRedisUrl, MAX_STALLS, PREFIX, queueKeys, resolveQueueName, type DeadLetter, type QueueTarget } from './queue-redis.js';

export interface QueueStatus {
  queue: string;
  redis: string;
  output: string | null;
  job: string | null;
  /** BullMQ job counts by state. */
  counts: Record<'waiting' | 'active' | 'delayed' | 'prioritized' | 'completed' | 'failed', number>;
  dead: DeadLetter[];
  /** Done markers in the output against the units of its `_plan.json`; null when the output has none yet. */
  units: { planned: number; done: number } | null;
}

/**
 * Units BullMQ failed because their worker died more than MAX_STALLS times (a unit that kills
 * every worker, e.g. out of memory): BullMQ fails those inside Redis without a worker 'failed'
 * event, so they never reach the dead-letter list; status reports them as dead all the same.
 */
async function stalledOut(queue: Queue, listed: Set<string>): Promise<DeadLetter[]> {
  const out: DeadLetter[] = [];
  for (let start = 0; ; start += 1000) {
    const failed = await queue.getFailed(start, start + 999);
    for (const j of failed) {
      const unit = (j.data as { unit?: { id?: string } } | undefined)?.unit?.id;
      if (!unit || listed.has(unit) || !/stalled more than allowable limit/.test(j.failedReason ?? '')) continue;
      out.push({ unit, error: `its worker died ${MAX_STALLS + 1} times while running it (e.g. killed, or out of memory): ${j.failedReason}`, attempts: j.attemptsMade, failed_at: new Date(j.finishedOn ?? Date.now()).toISOString(), worker: j.processedBy ?? 'unknown' });
    }
    if (failed.length < 1000) return out;
  }
}

/** `bitprep status`: BullMQ counts, the dead-letter list, and done markers against the plan. */
export async function queueStatus(target: QueueTarget): Promise<QueueStatus> {
  const redis = await connect(target.url);
  try {
    const name = await resolveQueueName(redis, target);
    const keys = queueKeys(name);
    const queue = new Queue(name, { connection: redis, prefix: PREFIX, skipMetasUpdate: true });
    try {
      const c = await queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized', 'completed', 'failed');
      const [output, cfgText, deadRaw] = await Promise.all([redis.get(keys.output), redis.get(keys.config), redis.lrange(keys.dead, 0, -1)]);
      const dead = deadRaw.map((d) => JSON.parse(d) as DeadLetter);
      let units: QueueStatus['units'] = null;
      if (output !== null) {
        const store = openStore(output);
        const plan = await readPlan(store).catch(() => undefined);
        if (plan) {
          const done = await doneUnitIds(store);
          units = { planned: plan.units, done: plan.unit_ids.filter((id) => done.has(id)).length };
        }
      }
      return {
        queue: name,
        redis: maskRedisUrl(target.url),
        output,
        job: cfgText === null ? null : String((JSON.parse(cfgText) as { job?: unknown }).job),
        counts: {
          waiting: c.waiting ?? 0,
          active: c.active ?? 0,
          delayed: c.delayed ?? 0,
          prioritized: c.prioritized ?? 0,
          completed: c.completed ?? 0,
          failed: c.failed ?? 0,
        },
        dead: [...dead, ...(await stalledOut(queue, new Set(dead.map((d) => d.unit))))],
        units,
      };
    } finally {
      await queue.close();
    }
  } finally {
    redis.disconnect();
  }
}
