import type { AnyJob } from '../src/job.js';
import { dalleIngestJob } from './dalle-ingest.js';
import { diffusionDbSynthJob } from './diffusiondb-synth.js';
import { imageShardsJob } from './image-shards.js';
import { laionFilterJob } from './laion-filter.js';
import { preEncodeJob } from './pre-encode.js';
import { recaptionJob } from './recaption.js';
import { trainingMixJob } from './training-mix.js';

/** Every job a config can name. */
export const jobs: Record<string, AnyJob> = {
  [imageShardsJob.name]: imageShardsJob,
  [laionFilterJob.name]: laionFilterJob,
  [recaptionJob.name]: recaptionJob,
  [dalleIngestJob.name]: dalleIngestJob,
  [diffusionDbSynthJob.name]: diffusionDbSynthJob,
  [preEncodeJob.name]: preEncodeJob,
  [trainingMixJob.name]: trainingMixJob,
};
