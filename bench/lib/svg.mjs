// A small SVG line chart: per-subflow receive throughput over time, from a
// timeline of { t (ms), subflows: [{ id, local, rx (bytes) }] } samples.
export function svgChart(timeline, { title = '', markAt, binMs = 200 } = {}) {
  const W = 760, H = 320, L = 60, R = 20, T = 40, B = 40;
  const ids = [...new Set(timeline.flatMap((p) => p.subflows.map((s) => s.id)))].sort((a, b) => a - b);
  const end = timeline[timeline.length - 1]?.t ?? 1;
  const series = ids.map((id) => {
    const pts = [];
    let prev;
    for (let t = binMs; t <= end; t += binMs) {
      const sample = [...timeline].reverse().find((p) => p.t <= t);
      const rx = sample?.subflows.find((s) => s.id === id)?.rx ?? prev ?? 0;
      const mbit = prev === undefined ? 0 : ((rx - prev) * 8) / (binMs / 1000) / 1e6;
      pts.push([t, Math.max(0, mbit)]);
      prev = rx;
    }
    const local = timeline.flatMap((p) => p.subflows).find((s) => s.id === id)?.local ?? '';
    return { id, local, pts };
  });
  const maxY = Math.max(10, ...series.flatMap((s) => s.pts.map((p) => p[1]))) * 1.1;
  const x = (t) => L + ((W - L - R) * t) / end;
  const y = (v) => H - B - ((H - T - B) * v) / maxY;
  const colors = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e'];
  const parts = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`, `<rect width="100%" height="100%" fill="white"/>`, `<text x="${L}" y="22" font-size="14">${title}</text>`];
  for (let v = 0; v <= maxY; v += maxY > 60 ? 20 : 10) parts.push(`<line x1="${L}" x2="${W - R}" y1="${y(v)}" y2="${y(v)}" stroke="#eee"/><text x="${L - 6}" y="${y(v) + 4}" text-anchor="end">${v.toFixed(0)}</text>`);
  for (let t = 0; t <= end; t += 1000) parts.push(`<text x="${x(t)}" y="${H - B + 16}" text-anchor="middle">${(t / 1000).toFixed(0)} s</text>`);
  parts.push(`<text x="14" y="${T + (H - T - B) / 2}" transform="rotate(-90 14 ${T + (H - T - B) / 2})" text-anchor="middle">Mbit/s received</text>`);
  if (markAt !== undefined) parts.push(`<line x1="${x(markAt)}" x2="${x(markAt)}" y1="${T}" y2="${H - B}" stroke="#999" stroke-dasharray="4 3"/><text x="${x(markAt) + 4}" y="${T + 12}" fill="#666">failure</text>`);
  series.forEach((s, i) => {
    parts.push(`<polyline fill="none" stroke="${colors[i % colors.length]}" stroke-width="2" points="${s.pts.map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(' ')}"/>`);
    parts.push(`<text x="${W - R - 150}" y="${T + 16 * (i + 1)}" fill="${colors[i % colors.length]}">subflow ${s.id} (${s.local})</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}

/**
 * Several total-throughput lines on one chart (e.g. mptls and kernel MPTCP
 * through the same outage): series [{ label, pts: [[t ms, Mbit/s]] }],
 * marks [{ at ms, label }] drawn as dashed verticals, spans [{ from, to }]
 * shaded (an outage).
 */
export function svgLines(series, { title = '', marks = [], spans = [], endMs } = {}) {
  const W = 760, H = 340, L = 60, R = 20, T = 40, B = 44;
  const end = endMs ?? Math.max(1000, ...series.flatMap((s) => s.pts.map((p) => p[0])));
  const maxY = Math.max(10, ...series.flatMap((s) => s.pts.map((p) => p[1]))) * 1.1;
  const x = (t) => L + ((W - L - R) * Math.min(t, end)) / end;
  const y = (v) => H - B - ((H - T - B) * v) / maxY;
  const colors = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e'];
  const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const parts = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`, `<rect width="100%" height="100%" fill="white"/>`, `<text x="${L}" y="22" font-size="14">${esc(title)}</text>`];
  for (const s of spans) parts.push(`<rect x="${x(s.from)}" y="${T}" width="${Math.max(1, x(s.to) - x(s.from))}" height="${H - T - B}" fill="#f3e6e6"/>`);
  for (let v = 0; v <= maxY; v += maxY > 60 ? 20 : 10) parts.push(`<line x1="${L}" x2="${W - R}" y1="${y(v)}" y2="${y(v)}" stroke="#eee"/><text x="${L - 6}" y="${y(v) + 4}" text-anchor="end">${v.toFixed(0)}</text>`);
  const step = end > 20000 ? 5000 : end > 10000 ? 2000 : 1000;
  for (let t = 0; t <= end; t += step) parts.push(`<text x="${x(t)}" y="${H - B + 16}" text-anchor="middle">${(t / 1000).toFixed(0)} s</text>`);
  parts.push(`<text x="14" y="${T + (H - T - B) / 2}" transform="rotate(-90 14 ${T + (H - T - B) / 2})" text-anchor="middle">Mbit/s received</text>`);
  marks.forEach((m, i) => parts.push(`<line x1="${x(m.at)}" x2="${x(m.at)}" y1="${T}" y2="${H - B}" stroke="#999" stroke-dasharray="4 3"/><text x="${x(m.at) + 4}" y="${T + 12 + 14 * i}" fill="#666">${esc(m.label)}</text>`));
  series.forEach((s, i) => {
    parts.push(`<polyline fill="none" stroke="${colors[i % colors.length]}" stroke-width="2" points="${s.pts.map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(' ')}"/>`);
    parts.push(`<text x="${W - R - 260}" y="${T + 16 * (i + 1)}" fill="${colors[i % colors.length]}">${esc(s.label)}</text>`);
  });
  parts.push(`<text x="${L}" y="${H - 6}" fill="#666">time since the client's secureConnect; receiver-side throughput in 200 ms bins</text>`);
  parts.push('</svg>');
  return parts.join('\n');
}
