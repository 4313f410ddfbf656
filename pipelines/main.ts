#!/usr/bin/env node
import { evalCommand } from '../evaluation/eval-command.js';
import { fetchAssetsCommand } from '../evaluation/prompts/fetch-assets-command.js';
import { tablesCommand } from '../evaluation/tables/tables-command.js';
import { runCli } from '../src/cli/program.js';
import { packageVersion } from '../src/package-root.js';
import { runDemo } from './demo.js';
import { feedCommand } from './feed-command.js';
import { jobs } from './index.js';
import { latentsCommand } from './latents-command.js';
import { recaptionCommand } from './recaption-command.js';
import { reportCommand } from './report-command.js';

// The composition root: the CLI (src/) gets the jobs and the demo from here.
await runCli({ jobs, demo: runDemo, version: packageVersion, commands: [recaptionCommand(jobs), latentsCommand(), reportCommand(), feedCommand(), evalCommand(), tablesCommand(), fetchAssetsCommand()] }, process.argv);
