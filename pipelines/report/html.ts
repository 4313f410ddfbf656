import type { Funnel } from '../../src/stats.js';
import { bitHeatmapPng } from './bit-heatmap.js';
import type { ReportData, Thumb } from './collect.js';
import { esc, histogramSvg, throughputSvg, tokenEntropySvg } from './svg-charts.js';

const CSS = `
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:1200px;padding:0 16px;color:#1d1d1f;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}h3{font-size:14px;margin:14px 0 4px}
.meta{color:#555}.meta td{padding:1px 12px 1px 0}
table.funnel{border-collapse:collapse;min-width:420px}table.funnel td,table.funnel th{padding:3px 10px;border-bottom:1px solid #eee;text-align:right}
table.funnel td:first-child,table.funnel th:first-child{text-align:left}table.funnel tr.total td{font-weight:600}
.charts{display:flex;flex-wrap:wrap;gap:18px}.panel{flex:0 0 auto}.panel p{margin:2px 0;color:#555;font-size:12px}
svg.chart text{font-size:10px;fill:#444}svg.chart text.thr{fill:#111;font-weight:600}
.legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 12px;vertical-align:middle}
.grid{display:flex;flex-wrap:wrap;gap:8px}.grid figure{margin:0;width:164px}.grid img{display:block;max-width:160px;max-height:160px;border:1px solid #ccc}
.grid figcaption{font-size:11px;color:#444;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.verdict{font-weight:600}.note{color:#777;font-size:12px}
`;

/** Units not done that the report names before saying how many more. */
const MAX_LISTED = 20;

const pct = (v: number, of: number) => (of ? `${((100 * v) / of).toFixed(1)}%` : '–');

function funnelTable(f: Funnel): string {
  const rows: string[] = [`<tr class="total" data-row="rows_in"><td>rows in</td><td class="count">${f.rows_in}</td><td></td></tr>`];
  for (const [k, v] of Object.entries(f.dropped).sort()) rows.push(`<tr data-row="dropped:${esc(k)}"><td>dropped by ${esc(k)}</td><td class="count">${v}</td><td>${pct(v, f.rows_in)}</td></tr>`);
  for (const [k, v] of Object.entries(f.failed).sort()) rows.push(`<tr data-row="failed:${esc(k)}"><td>failed at ${esc(k)}</td><td class="count">${v}</td><td>${pct(v, f.rows_in)}</td></tr>`);
  rows.push(`<tr class="total" data-row="written"><td>written</td><td class="count">${f.written}</td><td>${pct(f.written, f.rows_in)}</td></tr>`);
  return `<table class="funnel" id="funnel"><thead><tr><th>where rows ended</th><th>rows</th><th>share</th></tr></thead><tbody>${rows.join('')}</tbody></table>`;
}

function grid(thumbs: Thumb[], kind: string): string {
  if (thumbs.length === 0) return '<p class="note">none</p>';
  return `<div class="grid">${thumbs.map((t) => `<figure class="${kind}"><img src="${t.src}" alt="${esc(t.key)}" title="${esc(t.title)}" loading="eager"><figcaption title="${esc(t.title)}">${esc(t.label)}</figcaption></figure>`).join('')}</div>`;
}

/** The whole report: one HTML document with inline CSS, inline SVG and data-URI images; it loads nothing. */
export async function renderReport(d: ReportData): Promise<string> {
  const s = d.summary;
  const parts: string[] = [];
  parts.push(`<h1>bitprep report: ${esc(d.job)}</h1><table class="meta"><tr><td>output</td><td>${esc(d.output)}</td></tr><tr><td>units</td><td>${s.units.done} done of ${s.units.planned} planned</td></tr>${s.units.pending.length ? `<tr class="pending"><td>not done</td><td>${esc(s.units.pending.slice(0, MAX_LISTED).join(', '))}${s.units.pending.length > MAX_LISTED ? ` and ${s.units.pending.length - MAX_LISTED} more` : ''} (this report leaves them out; rerun the job to finish them)</td></tr>` : ''}${d.firstStartedAt ? `<tr><td>first unit started</td><td>${esc(d.firstStartedAt)}</td></tr>` : ''}${d.lastFinishedAt ? `<tr><td>last unit finished</td><td>${esc(d.lastFinishedAt)}</td></tr>` : ''}<tr><td>report made</td><td>${esc(d.generatedAt)}</td></tr><tr><td>outputs</td><td>${s.outputs.files} files, ${(s.outputs.bytes / 1e6).toFixed(1)} MB</td></tr></table>`);
  parts.push(`<h2>Funnel</h2>${funnelTable(s.funnel)}${s.funnel_balances ? '' : '<p class="note">the funnel does not balance: rows in ≠ written + dropped + failed</p>'}`);

  if (d.histograms.length) {
    parts.push(`<h2>Distributions</h2><p class="legend"><span style="background:#3a8d5c"></span>kept<span style="background:#c8553d"></span>dropped or failed (any reason) — dashed line: the threshold in _config.json</p><div class="charts">`);
    for (const p of d.histograms) {
      const h = p.hist;
      parts.push(`<div class="panel" data-field="${esc(p.field)}"><h3>${esc(p.title)}</h3>${histogramSvg(p)}<p>${h.count} rows · min ${h.min.toFixed(3)} · mean ${h.mean.toFixed(3)} · max ${h.max.toFixed(3)}</p></div>`);
    }
    parts.push('</div>');
  }

  if (d.latent) {
    const r = d.latent;
    parts.push(`<h2>Latent bit usage</h2><p>verdict: <span class="verdict">${esc(r.verdict)}</span>${r.reasons.length ? ` — ${esc(r.reasons.join('; '))}` : ''}</p><p>${r.images} latents · mean bit entropy ${r.meanBitEntropy.toFixed(3)} · entropy sum ${r.entropySumBits.toFixed(0)} bits · ${r.deadBits.length} dead bits · ${r.deadTokens.length} dead tokens · ~${r.distinct.estimate} distinct${r.distinct.exact ? '' : ' (estimated)'}</p><div class="charts"><div class="panel"><h3>p(1) per bit (rows: tokens, columns: bits; black 0, white 1)</h3><img class="heatmap" alt="bit usage" src="${await bitHeatmapPng(r.bitOnesFraction)}"></div><div class="panel"><h3>Entropy per token</h3>${tokenEntropySvg(r.tokenMeanEntropy)}</div></div>`);
  }

  if (d.throughput.length) {
    const rows = d.throughput.reduce((a, p) => a + p.rows, 0);
    const secs = d.throughput.reduce((a, p) => a + p.seconds, 0);
    parts.push(`<h2>Throughput</h2><div class="panel">${throughputSvg(d.throughput)}<p>${d.throughput.length} units · ${rows} rows · ${(rows / Math.max(secs, 1e-6)).toFixed(1)} rows/s per unit on average (units run in parallel add up)</p></div>`);
  }

  if (d.hasImageShards) {
    parts.push(`<h2>Kept images</h2><p class="note">the first samples of shards spread over the output; hover for caption and scores</p><section id="kept">${grid(d.kept, 'kept')}</section>`);
    parts.push('<h2>Dropped images by filter</h2><section id="dropped">');
    if (d.noThumbSidecars) parts.push('<p class="note">no &lt;unit&gt;.thumbs sidecars in this output (laion-filter writes them unless thumbnails.dropped_per_unit is 0; outputs made before they existed have none)</p>');
    else if (d.dropped.length === 0) parts.push('<p class="note">no image was dropped after decoding</p>');
    for (const [reason, thumbs] of d.dropped) parts.push(`<h3 data-reason="${esc(reason)}">${esc(reason)} (${s.funnel.dropped[reason] ?? 0} rows in all)</h3>${grid(thumbs, 'dropped')}`);
    parts.push('</section>');
  }

  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>bitprep report: ${esc(d.job)} — ${esc(d.output)}</title><style>${CSS}</style></head><body>${parts.join('\n')}</body></html>\n`;
}
