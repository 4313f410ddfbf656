// Module hooks (node:module register) that append every resolved module URL to the file named in
// BITPREP_MODULE_LOG: what a command loaded, seen from outside the code under test.
import { appendFileSync } from 'node:fs';

export async function resolve(specifier, context, next) {
  const r = await next(specifier, context);
  if (process.env.BITPREP_MODULE_LOG) appendFileSync(process.env.BITPREP_MODULE_LOG, `${r.url}\n`);
  return r;
}
