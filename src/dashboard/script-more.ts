/** The Schedules and Workers views, and the start of the page script. */
export const SCRIPT_MORE = String.raw`
VIEWS.schedules = async function (main) {
  const draw = async () => {
    const { schedules } = await api('api/schedules')
    const rows = schedules.map((x) => {
      const base = 'api/schedules/' + encodeURIComponent(x.name)
      return h('tr', { 'data-schedule': x.name },
        h('th', { scope: 'row', class: 'text' }, x.name),
        h('td', { class: 'text' }, x.task),
        h('td', { class: 'text' }, x.cron ? x.cron + ' (' + x.timezone + ')' : 'every ' + ms(x.everyMs)),
        h('td', { class: 'text' + (x.enabled ? '' : ' bad') }, x.enabled ? 'active' : 'paused'),
        h('td', { class: 'text' }, x.enabled ? when(x.nextFireAt) : '—'),
        h('td', { class: 'text' }, when(x.lastFireAt)),
        h('td', {}, x.lastTaskId ? h('a', { href: '#/task/' + encodeURIComponent(x.lastTaskId) }, x.lastTaskId) : '—'),
        h('td', { class: 'text bad' }, x.lastError || ''),
        h('td', { class: 'actions' },
          x.enabled ? actionButton('Pause ' + x.name, base + '/pause', {}, draw) : actionButton('Resume ' + x.name, base + '/resume', {}, draw),
          actionButton('Run ' + x.name + ' now', base + '/run', {}, draw)))
    })
    fill(main, h('h2', {}, 'Schedules'),
      rows.length ? table(['name', 'task', 'timing', 'state', 'next fire', 'last fire', 'last task', 'last error', 'actions'], rows, 'schedules')
        : h('p', { class: 'muted' }, 'No schedules.'))
  }
  await draw()
  every(5000, () => draw().catch(() => {}))
}

VIEWS.workers = async function (main) {
  const draw = async () => {
    const [{ workers }, running] = await Promise.all([api('api/workers'), api('api/tasks?state=running&limit=500')])
    // What each worker runs now, from the running tasks' worker ids.
    const byWorker = new Map()
    for (const t of running.tasks) if (t.workerId) byWorker.set(t.workerId, [...(byWorker.get(t.workerId) || []), t])
    const runs = (id) => (byWorker.get(id) || []).map((t) => h('a', { href: '#/task/' + encodeURIComponent(t.id) }, t.id + ' ' + t.name))
    const rows = workers.map((w) => h('tr', {},
      h('th', { scope: 'row', class: 'text' }, w.id),
      h('td', { class: 'text' + (w.alive ? '' : ' bad') }, w.alive ? 'alive' : 'silent'),
      h('td', { class: 'text' }, w.queues.join(', ')),
      h('td', { class: 'text' }, w.tasks.join(', ')),
      h('td', {}, w.running),
      h('td', { class: 'text' }, when(w.startedAt)),
      h('td', {}, age(Date.now() - new Date(w.lastSeenAt).getTime()) + ' ago'),
      h('td', { class: 'text running-list' }, runs(w.id).length ? runs(w.id) : '—')))
    fill(main, h('h2', {}, 'Workers'),
      rows.length ? table(['worker', 'state', 'queues', 'tasks', 'holding', 'started', 'last heartbeat', 'running now'], rows, 'live workers')
        : h('p', { class: 'muted' }, 'No live worker.'))
  }
  await draw()
  every(5000, () => draw().catch(() => {}))
}

window.addEventListener('hashchange', route)
loadSession().then(route)
`
