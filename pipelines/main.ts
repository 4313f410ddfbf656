#!/usr/bin/env node
import { runCli } from '../src/cli/program.js';
import { cliWiring } from './cli-wiring.js';

await runCli(cliWiring, process.argv);
