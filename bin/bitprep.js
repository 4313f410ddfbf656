#!/usr/bin/env node
import { availableParallelism } from 'node:os';

// sharp decodes on libuv's thread pool (4 threads unless told otherwise); size it to the
// machine before anything starts the pool, so image stages can use every core.
process.env.UV_THREADPOOL_SIZE ??= String(Math.max(4, 2 * availableParallelism()));
// The bundled CLI (npm ci builds dist/ in its prepare step: scripts/build-cli.mjs).
await import('../dist/main.js');
