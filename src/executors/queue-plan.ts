import { Queue } from 'bullmq';
import type { AnyJob, BaseJobConfig } from '../job.js';
import type { Logger } from '../log.js';
import { openStore } from '../stores/open-store.js';
import type { Unit } from '../units/unit.js';
import { checkConfig, checkPlan, configJson, logRun } from './local.js';
import { bullJobId, checkQueueName, connect, defaultQueueName, doneUnitIds, PREFIX, queueKeys, REGISTRY_KEY, unfinishedCount, type QueueTarget, type UnitJobData } from './queue-redis.js';

/** Units added to BullMQ per round trip. */
const ADD_CHUNK = 1000;

export interface EnqueueOptions extends QueueTarget {
  /** Runs of a unit before it goes to the dead-letter list (BullMQ `attempts`). */
  attempts: number;
  /** First retry delay; doubles per retry (BullMQ exponential backoff). */
  backoffMs: number;
  log: Logger;
}

export interface EnqueueResult {
  queue: string;
  planned: number;
  enqueued: number;
  alreadyDone: number;
  /** Units with a job still waiting, delayed or running. */
  alreadyQueued: number;
  /** Units whose job failed every attempt (in the dead-letter list); re-planning leaves them there. */
  dead: number;
}

/**
 * `bitprep plan --queue`: writes `_plan.json`/`_config.json` into the output as a local run does
 * (refusing an output planned differently), stores the config once in Redis, and adds one BullMQ
 * job per unit without a done marker. Job ids are the unit ids, so planning again adds nothing
 * that is queued already. A queue whose units are still unfinished refuses a different config.
 */
export async function enqueuePlan(job: AnyJob, cfg: BaseJobConfig, units: Unit[], opts: EnqueueOptions): Promise<EnqueueResult> {
  const name = checkQueueName(opts.name ?? defaultQueueName(cfg.output));
  const store = openStore(cfg.output);
  await checkPlan(store, job.name, units);
  await checkConfig(store, job, cfg, opts.log);
  await logRun(store, cfg, new Date(), { command: 'plan --queue', queue: name });
  const cfgText = configJson(cfg);

  const redis = await connect(opts.url);
  const queue = new Queue<UnitJobData>(name, { connection: redis, prefix: PREFIX });
  try {
    const keys = queueKeys(name);
    const [prevCfg, prevOutput] = await Promise.all([redis.get(keys.config), redis.get(keys.output)]);
    if (prevOutput !== null && prevOutput !== cfg.output) throw new Error(`queue ${name} holds the plan of output ${prevOutput}, not ${cfg.output}: use another --queue-name`);
    if (prevCfg !== null && prevCfg !== cfgText && (await unfinishedCount(queue)) > 0) {
      throw new Error(`queue ${name} still has unfinished units planned with another config: let its workers finish, or use another --queue-name`);
    }
    await redis.multi().set(keys.config, cfgText).set(keys.output, cfg.output).sadd(REGISTRY_KEY, name).exec();

    const done = await doneUnitIds(store);
    const todo = units.filter((u) => !done.has(u.id));
    const result: EnqueueResult = { queue: name, planned: units.length, enqueued: 0, alreadyDone: units.length - todo.length, alreadyQueued: 0, dead: 0 };
    for (let i = 0; i < todo.length; i += ADD_CHUNK) {
      const chunk = todo.slice(i, i + ADD_CHUNK);
      const existing = await redis.pipeline(chunk.map((u) => ['exists', `${PREFIX}:${name}:${bullJobId(u.id)}`])).exec();
      const fresh: Unit[] = [];
      for (let j = 0; j < chunk.length; j++) {
        if (!existing?.[j]?.[1]) {
          fresh.push(chunk[j]);
          continue;
        }
        const state = await queue.getJobState(bullJobId(chunk[j].id));
        if (state === 'failed') result.dead++;
        else if (state === 'completed' || state === 'unknown') {
          // Completed in Redis yet no done marker: the output was removed since; run the unit again.
          await queue.remove(bullJobId(chunk[j].id));
          fresh.push(chunk[j]);
        } else result.alreadyQueued++;
      }
      await queue.addBulk(
        fresh.map((unit) => ({
          name: 'unit',
          data: { unit },
          opts: { jobId: bullJobId(unit.id), attempts: opts.attempts, backoff: { type: 'exponential', delay: opts.backoffMs } },
        })),
      );
      result.enqueued += fresh.length;
    }
    return result;
  } finally {
    await queue.close();
    redis.disconnect();
  }
}
