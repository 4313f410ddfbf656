#!/usr/bin/env node
import { printWarningsOnOneLine } from '../src/cli/process-warnings.js';
import { runCli } from '../src/cli/program.js';
import { proxyConfigured } from '../src/net/proxy-env.js';
import { cliWiring } from './cli-wiring.js';

printWarningsOnOneLine();
// Only a process with a proxy in its environment loads the proxy code.
if (proxyConfigured()) await (await import('../src/net/proxy.js')).installFetchProxy();
await runCli(cliWiring, process.argv);
