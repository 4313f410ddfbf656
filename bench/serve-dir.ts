// Child-process image host for the laion-filter benchmarks: serves a folder on 127.0.0.1 (404 for
// missing files) so server CPU is not charged to the measured process. Prints its URL, then
// serves until stdin closes.
import { startDemoImageServer } from '../pipelines/demo-server.js';

const server = await startDemoImageServer(process.argv[2]);
process.stdout.write(server.url + '\n');
process.stdin.resume();
process.stdin.on('end', () => void server.close().then(() => process.exit(0)));
