import { assertSafeName } from './store.js';

/** `s3://bucket/prefix` split and normalised (no leading or trailing `/` on the prefix); throws on anything else. */
export function parseS3Url(url: string): { bucket: string; prefix: string; url: string } {
  const m = /^s3:\/\/([^/]+)\/*(.*?)\/*$/.exec(url);
  if (!m) throw new Error(`invalid S3 URL ${url}: expected s3://bucket/prefix`);
  const [, bucket, prefix] = m;
  if (prefix) assertSafeName(prefix);
  return { bucket, prefix, url: `s3://${bucket}${prefix ? `/${prefix}` : ''}` };
}
