import type { AnyJob } from '../src/job.js';
import { imageShardsJob } from './image-shards.js';
import { laionFilterJob } from './laion-filter.js';

/** Every job a config can name. */
export const jobs: Record<string, AnyJob> = {
  [imageShardsJob.name]: imageShardsJob,
  [laionFilterJob.name]: laionFilterJob,
};
