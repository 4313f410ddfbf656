import { isIP } from 'node:net';
import { SampleError } from '../sample.js';

/**
 * Which addresses an outbound fetch may connect to. URLs in web-scraped datasets are untrusted
 * input: without this, a row (or a redirect, or a DNS answer) could make a download worker read
 * cloud metadata credentials or internal services.
 *
 * IPv6 is decided by allow-list (only global unicast 2000::/3 minus special blocks is public), so a
 * range nobody thought of fails closed. IPv4-mapped and the v6 forms that embed a v4 address
 * (NAT64, 6to4) are judged by the embedded v4 address.
 */

/** An address as bytes: 4 for IPv4, 16 for IPv6. */
type Bytes = number[];

interface Cidr {
  bytes: Bytes;
  prefix: number;
}

function parseV4(ip: string): Bytes | undefined {
  const parts = ip.split('.');
  if (parts.length !== 4) return undefined;
  const out: number[] = [];
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p)) return undefined;
    const n = Number(p);
    if (n > 255) return undefined;
    out.push(n);
  }
  return out;
}

function parseV6(ip: string): Bytes | undefined {
  let s = ip;
  const zone = s.indexOf('%');
  if (zone >= 0) s = s.slice(0, zone);
  const lastColon = s.lastIndexOf(':');
  if (s.slice(lastColon + 1).includes('.')) {
    // A dotted v4 tail (::ffff:1.2.3.4) is two 16-bit groups written differently.
    const v4 = parseV4(s.slice(lastColon + 1));
    if (!v4) return undefined;
    s = `${s.slice(0, lastColon + 1)}${((v4[0] << 8) | v4[1]).toString(16)}:${((v4[2] << 8) | v4[3]).toString(16)}`;
  }
  const halves = s.split('::');
  if (halves.length > 2) return undefined;
  const groups = (h: string) => (h === '' ? [] : h.split(':'));
  const toNums = (g: string[]) => g.map((x) => (/^[0-9a-f]{1,4}$/i.test(x) ? parseInt(x, 16) : NaN));
  const head = toNums(groups(halves[0]));
  let words: number[];
  if (halves.length === 2) {
    const rest = toNums(groups(halves[1]));
    const fill = 8 - head.length - rest.length;
    if (fill < 1) return undefined;
    words = [...head, ...new Array<number>(fill).fill(0), ...rest];
  } else {
    words = head;
  }
  if (words.length !== 8 || words.some((w) => Number.isNaN(w))) return undefined;
  return words.flatMap((w) => [w >> 8, w & 0xff]);
}

/** Parses an IPv4 or IPv6 literal (brackets and zone id allowed); IPv4-mapped v6 becomes v4. */
function parseIp(ip: string): Bytes | undefined {
  let s = ip.trim();
  if (s.startsWith('[') && s.endsWith(']')) s = s.slice(1, -1);
  const v4 = parseV4(s);
  if (v4) return v4;
  const v6 = s.includes(':') ? parseV6(s) : undefined;
  if (!v6) return undefined;
  // ::ffff:a.b.c.d connects to the v4 address itself, so it is judged (and allowed) as one.
  if (v6.slice(0, 10).every((b) => b === 0) && v6[10] === 0xff && v6[11] === 0xff) return v6.slice(12);
  return v6;
}

function inCidr(bytes: Bytes, c: Cidr): boolean {
  if (bytes.length !== c.bytes.length) return false;
  let bits = c.prefix;
  for (let i = 0; bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if ((bytes[i] & mask) !== (c.bytes[i] & mask)) return false;
  }
  return true;
}

/** The range `text` names, or why it names none (one phrase, for a config problem). */
function cidrProblem(text: string): { cidr?: Cidr; problem?: string } {
  const parts = text.trim().split('/');
  if (parts.length > 2) return { problem: 'more than one "/"' };
  const [addr, len] = parts;
  const bytes = parseIp(addr);
  if (!bytes) {
    if (addr.trim() === '') return { problem: 'no address before the prefix length' };
    // Host names would need DNS at plan time and can change address; the policy judges addresses.
    if (/^[a-z0-9.-]+$/i.test(addr) && /[a-z]/i.test(addr) && !addr.includes(':')) return { problem: `${JSON.stringify(addr)} is a host name, not an address (give its address, e.g. 127.0.0.1/32 or ::1/128)` };
    return { problem: `${JSON.stringify(addr)} is not an IPv4 or IPv6 address` };
  }
  const max = bytes.length * 8;
  if (len === undefined) return { cidr: { bytes, prefix: max } };
  if (!/^\d+$/.test(len)) return { problem: `prefix length ${JSON.stringify(len)} is not a whole number` };
  // A mapped v6 prefix like ::ffff:10.0.0.0/104 is converted to its v4 form.
  const mappedShift = bytes.length === 4 && addr.includes(':') ? 96 : 0;
  const prefix = Number(len) - mappedShift;
  if (prefix < 0 || prefix > max) {
    return { problem: `prefix length /${len} is out of range for ${mappedShift ? 'an IPv4-mapped IPv6 address (96–128)' : max === 32 ? 'an IPv4 address (0–32)' : 'an IPv6 address (0–128)'}` };
  }
  return { cidr: { bytes, prefix } };
}

/** Parses "a.b.c.d/n", "v6/n" or a bare address (a single-address range). */
export function parseCidr(text: string): Cidr {
  const { cidr, problem } = cidrProblem(text);
  if (!cidr) throw new Error(`invalid address or CIDR range ${JSON.stringify(text)}: ${problem}`);
  return cidr;
}

/**
 * Every entry of an allow list that is not an address or CIDR range, one line each naming the
 * config key and the entry (`fetch.allow_addresses[1]: invalid address or CIDR range "…": …`).
 */
export function allowListProblems(allow: readonly string[], key = 'allow_addresses'): string[] {
  const out: string[] = [];
  allow.forEach((entry, i) => {
    const { problem } = cidrProblem(entry);
    if (problem) out.push(`${key}[${i}]: invalid address or CIDR range ${JSON.stringify(entry)}: ${problem}`);
  });
  return out;
}

const ranges = (list: [string, string][]) => list.map(([cidr, kind]) => ({ ...parseCidr(cidr), kind }));

// Order matters: the first match names the kind, so specific ranges come before their parents.
const V4_SPECIAL = ranges([
  ['169.254.169.254/32', 'cloud metadata'],
  ['0.0.0.0/8', 'unspecified'],
  ['10.0.0.0/8', 'private'],
  ['100.64.0.0/10', 'carrier-grade NAT'],
  ['127.0.0.0/8', 'loopback'],
  ['169.254.0.0/16', 'link-local'],
  ['172.16.0.0/12', 'private'],
  ['192.0.0.0/24', 'IETF protocol assignment'],
  ['192.0.2.0/24', 'documentation'],
  ['192.88.99.0/24', '6to4 relay'],
  ['192.168.0.0/16', 'private'],
  ['198.18.0.0/15', 'benchmarking'],
  ['198.51.100.0/24', 'documentation'],
  ['203.0.113.0/24', 'documentation'],
  ['224.0.0.0/4', 'multicast'],
  ['240.0.0.0/4', 'reserved'],
]);

const V6_SPECIAL = ranges([
  ['fd00:ec2::254/128', 'cloud metadata'],
  ['::/128', 'unspecified'],
  ['::1/128', 'loopback'],
  ['fe80::/10', 'link-local'],
  ['fc00::/7', 'private'],
  ['ff00::/8', 'multicast'],
  ['2001:db8::/32', 'documentation'],
  ['3fff::/20', 'documentation'],
  ['2001::/32', 'Teredo tunnel'],
  ['2001:2::/48', 'benchmarking'],
  ['2001:10::/28', 'ORCHID'],
  ['2001:20::/28', 'ORCHIDv2'],
]);
const V6_GLOBAL = parseCidr('2000::/3');
const NAT64 = [parseCidr('64:ff9b::/96'), parseCidr('64:ff9b:1::/48')];
const SIX_TO_FOUR = parseCidr('2002::/16');

/** What kind of address `ip` is: 'public', or why it is not ('private', 'loopback', 'invalid'…). */
export function addressKind(ip: string): string {
  const bytes = parseIp(ip);
  if (!bytes) return 'invalid';
  if (bytes.length === 4) return V4_SPECIAL.find((r) => inCidr(bytes, r))?.kind ?? 'public';
  const special = V6_SPECIAL.find((r) => inCidr(bytes, r));
  if (special) return special.kind;
  // Translated and tunnelled forms reach the embedded v4 address, so judge that one.
  if (NAT64.some((r) => inCidr(bytes, r))) return addressKind(bytes.slice(12).join('.'));
  if (inCidr(bytes, SIX_TO_FOUR)) return addressKind(bytes.slice(2, 6).join('.'));
  if (!inCidr(bytes, V6_GLOBAL)) return bytes.slice(0, 12).every((b) => b === 0) ? 'IPv4-compatible' : 'reserved';
  return 'public';
}

/** True when `ip` is a globally routable unicast address; anything unparsable is not. */
export function isPublicAddress(ip: string): boolean {
  return addressKind(ip) === 'public';
}

const parsedAllow = new WeakMap<string[], Cidr[]>();

function allowRanges(allow: string[]): Cidr[] {
  let r = parsedAllow.get(allow);
  if (!r) {
    r = allow.map(parseCidr);
    parsedAllow.set(allow, r);
  }
  return r;
}

/** Throws when any entry of an allow list is not an address or CIDR range (a config error). */
export function validateAllowList(allow: string[]): void {
  allowRanges(allow);
}

/**
 * Throws SampleError 'blocked_address' unless `ip` is public or inside one of `allow` (CIDRs or
 * single addresses the config explicitly permits, e.g. ['127.0.0.1/32']).
 */
export function checkAddress(ip: string, allow: string[]): void {
  const kind = addressKind(ip);
  if (kind === 'public') return;
  const bytes = parseIp(ip);
  if (bytes && allowRanges(allow).some((c) => inCidr(bytes, c))) return;
  throw new SampleError('blocked_address', `refusing to connect to ${ip} (${kind} address); list it in allow_addresses to permit it`);
}

/** The address in a URL host if it is an IP literal ("[::1]" → "::1"), else undefined. */
export function ipLiteral(hostname: string): string | undefined {
  const h = hostname.startsWith('[') && hostname.endsWith(']') ? hostname.slice(1, -1) : hostname;
  return isIP(h) ? h : undefined;
}
