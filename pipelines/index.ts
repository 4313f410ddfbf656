import type { AnyJob } from '../src/job.js';
import { imageShardsJob } from './image-shards.js';

/** Every job a config can name. */
export const jobs: Record<string, AnyJob> = {
  [imageShardsJob.name]: imageShardsJob,
};
