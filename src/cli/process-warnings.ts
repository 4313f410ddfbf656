/**
 * Node prints each process warning as a block ("(node:PID) Warning: …" and every line of the
 * message, plus a hint about --trace-warnings); libraries use warnings for notices to their own
 * users, and the AWS SDK's Node-version notice is eight lines long on every S3 use under Node 20
 * and 21. The CLI prints a warning as one line, the whole block only with BITPREP_DEBUG, and turns
 * off the SDK's notice unless the user set its switch (bitprep pins the SDK version it tests, so
 * a notice about versions published later is not the user's concern: README, Install).
 */
export function printWarningsOnOneLine(stderr: NodeJS.WritableStream = process.stderr): void {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ||= 'true';
  if (process.env.BITPREP_DEBUG) return;
  // Node's own printer is a 'warning' listener: replacing it is how its output is changed.
  process.removeAllListeners('warning');
  process.on('warning', (w: Error) => {
    const first = w.message.split('\n').find((l) => l.trim() !== '') ?? '';
    stderr.write(`warning: ${w.name && w.name !== 'Warning' ? `${w.name}: ` : ''}${first.trim()}\n`);
  });
}
