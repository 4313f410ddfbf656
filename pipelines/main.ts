#!/usr/bin/env node
import { printWarningsOnOneLine } from '../src/cli/process-warnings.js';
import { runCli } from '../src/cli/program.js';
import { cliWiring } from './cli-wiring.js';

printWarningsOnOneLine();
await runCli(cliWiring, process.argv);
