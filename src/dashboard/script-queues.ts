/**
 * The Queues view: depth per state, flow control (pause, limits), and per
 * queue the throughput/failure bars and wait/run p50/p95 lines of
 * /api/charts, drawn as inline SVG (no chart library).
 */
export const SCRIPT_QUEUES = String.raw`
const W = 560, H = 120, PAD = 30
function axis(svg, max, unit) {
  svg.append(s('line', { x1: PAD, y1: H - 16, x2: W, y2: H - 16, stroke: '#c7c7cc' }))
  svg.append(s('text', { x: 2, y: 12, class: 'axis' }, unit === 'ms' ? ms(max) : String(max)))
  svg.append(s('text', { x: 2, y: H - 18, class: 'axis' }, '0'))
}
function timeLabels(svg, points) {
  if (!points.length) return
  const t = (p) => new Date(p.at).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
  svg.append(s('text', { x: PAD, y: H - 2, class: 'axis' }, t(points[0])))
  svg.append(s('text', { x: W - 40, y: H - 2, class: 'axis' }, t(points[points.length - 1])))
}
// Stacked bars: succeeded (green) under failed (red), one bar per bucket.
function barChart(points, label) {
  const max = Math.max(1, ...points.map((p) => p.succeeded + p.failed))
  const svg = s('svg', { viewBox: '0 0 ' + W + ' ' + H, width: W, height: H, role: 'img', 'aria-label': label, class: 'chart throughput' }, s('title', {}, label))
  axis(svg, max, 'n')
  const bw = (W - PAD) / Math.max(1, points.length)
  const scale = (H - 24) / max
  points.forEach((p, i) => {
    const x = PAD + i * bw
    const hs = p.succeeded * scale, hf = p.failed * scale
    const tip = when(p.at) + ': ' + p.succeeded + ' succeeded, ' + p.failed + ' failed'
    if (hs > 0) svg.append(s('rect', { x: x, y: H - 16 - hs, width: Math.max(1, bw - 1), height: hs, class: 'ok' }, s('title', {}, tip)))
    if (hf > 0) svg.append(s('rect', { x: x, y: H - 16 - hs - hf, width: Math.max(1, bw - 1), height: hf, class: 'fail' }, s('title', {}, tip)))
  })
  timeLabels(svg, points)
  return svg
}
const SERIES = [['waitP50Ms', 'wait p50', 's1'], ['waitP95Ms', 'wait p95', 's2'], ['runP50Ms', 'run p50', 's3'], ['runP95Ms', 'run p95', 's4']]
function lineChart(points, label) {
  const max = Math.max(1, ...points.flatMap((p) => SERIES.map(([k]) => p[k] || 0)))
  const svg = s('svg', { viewBox: '0 0 ' + W + ' ' + H, width: W, height: H, role: 'img', 'aria-label': label, class: 'chart latency' }, s('title', {}, label))
  axis(svg, max, 'ms')
  const step = (W - PAD) / Math.max(1, points.length - 1)
  for (const [key, name, cls] of SERIES) {
    let d = ''
    points.forEach((p, i) => {
      if (p[key] === null || p[key] === undefined) return
      const x = PAD + i * step, y = H - 16 - (p[key] / max) * (H - 24)
      d += (d ? ' L' : 'M') + x.toFixed(1) + ' ' + y.toFixed(1)
      // A dot per bucket as well: with few buckets filled, a line alone is too short to see.
      svg.append(s('circle', { cx: x.toFixed(1), cy: y.toFixed(1), r: 2.5, class: 'dot ' + cls }, s('title', {}, name + ' ' + ms(p[key]) + ' at ' + when(p.at))))
    })
    if (d) svg.append(s('path', { d: d, class: 'line ' + cls }, s('title', {}, name)))
  }
  timeLabels(svg, points)
  return svg
}
function legend() {
  return h('p', { class: 'legend' },
    h('span', { class: 'key ok' }, 'succeeded'), h('span', { class: 'key fail' }, 'failed'),
    SERIES.map(([, name, cls]) => h('span', { class: 'key ' + cls }, name)))
}

VIEWS.queues = async function (main, params) {
  const range = params.get('range') === '24h' ? '24h' : '1h'
  const draw = async () => {
    const [stats, queues, charts] = await Promise.all([api('api/stats'), api('api/queues'), api('api/charts?range=' + range)])
    const settings = new Map(queues.queues.map((q) => [q.queue, q]))
    const rows = stats.queues.map((q) => {
      const f = q.flow || {}
      const paused = !!(settings.get(q.queue) || {}).paused
      const button = paused
        ? actionButton('Resume ' + q.queue, 'api/queues/' + encodeURIComponent(q.queue) + '/resume', {}, draw)
        : actionButton('Pause ' + q.queue, 'api/queues/' + encodeURIComponent(q.queue) + '/pause', {}, draw)
      return h('tr', { 'data-queue': q.queue },
        h('th', { scope: 'row' }, h('a', { href: '#/tasks?queue=' + encodeURIComponent(q.queue) }, q.queue)),
        ['waiting', 'pending', 'scheduled', 'dispatched', 'running', 'succeededLastHour'].map((k) => h('td', {}, q[k])),
        h('td', { class: q.failedLastHour > 0 ? 'bad' : '' }, q.failedLastHour),
        h('td', {}, q.throughputPerMinute15m.toFixed(1)),
        h('td', {}, age(q.oldestPendingMs)),
        h('td', {}, q.workers),
        h('td', { class: 'text state' + (paused ? ' bad' : '') }, paused ? 'paused' : f.heldBack || 'running'),
        h('td', { class: 'text' }, f.settings || '—'),
        h('td', {}, button))
    })
    const chartBlocks = charts.charts.map((c) => h('section', { class: 'queue-chart', 'aria-label': 'charts of queue ' + c.queue },
      h('h3', {}, c.queue),
      barChart(c.points, 'tasks finished per ' + (c.bucketSeconds / 60) + ' min in queue ' + c.queue + ', last ' + range),
      lineChart(c.points, 'wait and run time p50/p95 in queue ' + c.queue + ', last ' + range)))
    fill(main, 
      h('h2', {}, 'Queues'),
      h('p', { class: 'muted' }, 'updated ' + new Date(stats.at).toLocaleTimeString() + ' · every 5 s'),
      table(['queue', 'waiting', 'pending', 'scheduled', 'dispatched', 'running', 'succeeded 1h', 'failed 1h', 'done/min (15 min)', 'oldest pending', 'workers', 'state', 'limits', 'action'], rows, 'tasks per queue and state'),
      h('h2', {}, 'Throughput and latency'),
      h('p', {}, 'Range: ',
        h('a', { href: '#/queues?range=1h', 'aria-current': range === '1h' ? 'true' : null }, 'last hour'), ' · ',
        h('a', { href: '#/queues?range=24h', 'aria-current': range === '24h' ? 'true' : null }, 'last 24 hours')),
      legend(),
      chartBlocks.length ? chartBlocks : h('p', { class: 'muted' }, 'No task finished in this range yet.'))
  }
  await draw()
  every(5000, () => draw().catch((err) => say('cannot refresh: ' + err.message, true)))
}
`
