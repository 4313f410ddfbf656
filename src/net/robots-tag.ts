/**
 * X-Robots-Tag opt-outs. A header value is a comma-separated list of directives, optionally
 * scoped to one crawler with a leading `agent:` ("googlebot: noindex, nofollow" scopes both
 * directives); several headers may be sent. Directives that carry their own `name: value`
 * (unavailable_after, max-image-preview…) are not agent names.
 */

const VALUED_DIRECTIVES = new Set(['unavailable_after', 'max-snippet', 'max-image-preview', 'max-video-preview']);

/** The crawler token a user agent answers to: its product name ("bitprep/0.1 (+url)" → "bitprep"). */
export function agentToken(userAgent: string): string {
  return (userAgent.trim().split(/[\s/]/)[0] ?? '').toLowerCase();
}

/** Directives of X-Robots-Tag values that apply to `userAgent`, lower-cased, in header order. */
export function robotsDirectives(headerValues: string[], userAgent: string): string[] {
  const me = agentToken(userAgent);
  const out: string[] = [];
  for (const value of headerValues) {
    let agent: string | undefined;
    for (const raw of value.split(',')) {
      let token = raw.trim();
      const m = /^([A-Za-z0-9_.*-]+)\s*:\s*(.*)$/.exec(token);
      if (m && !VALUED_DIRECTIVES.has(m[1].toLowerCase())) {
        agent = m[1].toLowerCase();
        token = m[2].trim();
      }
      if (token === '') continue;
      if (agent === undefined || agent === '*' || agent === me) out.push(token.toLowerCase());
    }
  }
  return out;
}

/**
 * The first directive in `directives` that opts `userAgent` out, or undefined. `none` counts as
 * noindex (it means "noindex, nofollow").
 */
export function robotsOptOut(headerValues: string[], userAgent: string, directives = ['noai', 'noimageai', 'noindex', 'noimageindex']): string | undefined {
  const wanted = new Set(directives.map((d) => d.toLowerCase()));
  for (const d of robotsDirectives(headerValues, userAgent)) {
    if (wanted.has(d)) return d;
    if (d === 'none' && wanted.has('noindex')) return 'noindex';
  }
  return undefined;
}
