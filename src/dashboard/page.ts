import { createHash } from 'node:crypto'

/**
 * The dashboard's one page: no build step, no assets from elsewhere. It reads
 * /api/stats every 2 s and lists tasks on demand; everything it shows goes
 * in through textContent, never as HTML.
 *
 * Its inline style and script are allowed by hash in its Content-Security-Policy,
 * so nothing else (an injected tag, a handler attribute) can run.
 */
const STYLE = `
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #1d1d1f; }
  h1 { font-size: 1.3rem; margin: 0 0 .2rem; }
  h2 { font-size: 1.05rem; margin: 1.6rem 0 .5rem; }
  table { border-collapse: collapse; width: 100%; }
  th, td { text-align: right; padding: .25rem .6rem; border-bottom: 1px solid #e3e3e6; white-space: nowrap; }
  th:first-child, td:first-child, td.text, th.text { text-align: left; }
  td.text { white-space: normal; max-width: 40rem; overflow-wrap: anywhere; }
  .muted { color: #6e6e73; }
  .failed, .cancelled { color: #b3261e; }
  .succeeded { color: #1b7f3b; }
  form { display: flex; gap: .5rem; flex-wrap: wrap; align-items: center; }
  input, select, button { font: inherit; padding: .2rem .4rem; }
  pre { background: #f5f5f7; padding: .8rem; overflow: auto; max-height: 30rem; }
  a { color: #0b57d0; cursor: pointer; }
`

const SCRIPT = `
const $ = (sel) => document.querySelector(sel)
function cell(row, text, cls) {
  const td = row.insertCell()
  td.textContent = text
  if (cls) td.className = cls
  return td
}
function age(ms) {
  if (ms === null || ms === undefined) return '—'
  const s = Math.round(ms / 1000)
  return s < 120 ? s + ' s' : s < 7200 ? Math.round(s / 60) + ' min' : Math.round(s / 3600) + ' h'
}
async function getJson(path) {
  const res = await fetch(path)
  const body = await res.json()
  if (!res.ok) throw new Error(body.error || res.statusText)
  return body
}
async function refreshStats() {
  try {
    const snap = await getJson('/api/stats')
    const body = $('#queues tbody')
    body.replaceChildren()
    for (const q of [...snap.queues, { queue: 'all queues', ...snap.totals }]) {
      const row = body.insertRow()
      cell(row, q.queue)
      for (const k of ['waiting', 'pending', 'scheduled', 'dispatched', 'running', 'succeededLastHour'])
        cell(row, String(q[k]))
      cell(row, String(q.failedLastHour), q.failedLastHour > 0 ? 'failed' : '')
      cell(row, String(q.cancelledLastHour))
      cell(row, q.throughputPerMinute15m.toFixed(1))
      cell(row, age(q.oldestPendingMs))
      // Flow control (queue settings): paused, at its limit, or the settings in short.
      const f = q.flow
      cell(row, f ? (f.heldBack ? f.heldBack + (f.settings ? ' (' + f.settings + ')' : '') : f.settings || '-') : '', f && f.heldBack ? 'failed' : '')
    }
    $('#updated').textContent = 'updated ' + new Date(snap.at).toLocaleTimeString() + ' · every 2 s'
  } catch (err) {
    $('#updated').textContent = 'cannot read stats: ' + err.message
  }
}
async function showTask(id) {
  const pre = $('#task')
  pre.hidden = false
  try {
    pre.textContent = JSON.stringify(await getJson('/api/tasks/' + encodeURIComponent(id)), null, 2)
  } catch (err) {
    pre.textContent = err.message
  }
}
async function refreshTasks(event) {
  if (event) event.preventDefault()
  const params = new URLSearchParams()
  for (const [k, v] of new FormData($('#filters'))) if (v) params.set(k, String(v))
  params.set('limit', '50')
  try {
    const { tasks } = await getJson('/api/tasks?' + params)
    $('#list-error').textContent = tasks.length === 50 ? 'newest 50 shown' : tasks.length + ' shown'
    const body = $('#tasks tbody')
    body.replaceChildren()
    for (const t of tasks) {
      const row = body.insertRow()
      const link = document.createElement('a')
      link.textContent = t.id
      link.onclick = () => showTask(t.id)
      row.insertCell().append(link)
      cell(row, t.name, 'text')
      cell(row, t.queue, 'text')
      cell(row, t.state, 'text ' + t.state)
      cell(row, t.attempt + '/' + t.maxAttempts)
      cell(row, new Date(t.createdAt).toLocaleString(), 'text')
      cell(row, t.error || '', 'text')
    }
  } catch (err) {
    $('#list-error').textContent = err.message
  }
}
$('#filters').addEventListener('submit', refreshTasks)
refreshStats()
refreshTasks()
setInterval(refreshStats, 2000)
`

const hash = (text: string) => `'sha256-${createHash('sha256').update(text, 'utf8').digest('base64')}'`

export const DASHBOARD_PAGE_CSP =
  `default-src 'none'; script-src ${hash(SCRIPT)}; style-src ${hash(STYLE)}; connect-src 'self'; ` +
  "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

export const DASHBOARD_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>taskrelay</title>
<style>${STYLE}</style>
</head>
<body>
<h1>taskrelay</h1>
<div class="muted" id="updated">loading…</div>

<h2>Queues</h2>
<table id="queues">
  <thead><tr>
    <th>queue</th><th>waiting</th><th>pending</th><th>scheduled</th><th>dispatched</th><th>running</th>
    <th>succeeded 1h</th><th>failed 1h</th><th>cancelled 1h</th><th>done/min (15 min)</th><th>oldest pending</th><th class="text">flow</th>
  </tr></thead>
  <tbody></tbody>
</table>

<h2>Tasks</h2>
<form id="filters">
  <select name="state">
    <option value="">any state</option>
    <option>waiting</option><option>pending</option><option>dispatched</option><option>running</option>
    <option selected>failed</option><option>succeeded</option><option>cancelled</option>
  </select>
  <input name="queue" placeholder="queue">
  <input name="task" placeholder="task name (* wildcard)">
  <button>show</button>
  <span class="muted" id="list-error"></span>
</form>
<table id="tasks">
  <thead><tr>
    <th>id</th><th class="text">task</th><th class="text">queue</th><th class="text">state</th><th>attempt</th>
    <th class="text">created</th><th class="text">error</th>
  </tr></thead>
  <tbody></tbody>
</table>
<pre id="task" hidden></pre>

<script>${SCRIPT}</script>
</body>
</html>
`
