/**
 * The Tasks view (filters and keyset paging, all in the URL) and the Task
 * view (payload, result, progress, every attempt, dependencies, actions).
 */
export const SCRIPT_TASKS = String.raw`
const STATES = ['waiting', 'pending', 'scheduled', 'dispatched', 'running', 'failed', 'succeeded', 'cancelled']
const FILTERS = ['state', 'queue', 'task', 'since', 'workflow']

VIEWS.tasks = async function (main, params) {
  const form = h('form', { id: 'filters', role: 'search', onsubmit: (e) => {
    e.preventDefault()
    go('/tasks', new FormData(e.target))
  } },
    h('label', {}, 'State ', h('select', { name: 'state' }, h('option', { value: '' }, 'any state'),
      STATES.map((x) => h('option', { value: x, selected: params.get('state') === x }, x)))),
    h('label', {}, 'Queue ', h('input', { name: 'queue', value: params.get('queue') || '' })),
    h('label', {}, 'Task ', h('input', { name: 'task', value: params.get('task') || '', placeholder: '* wildcard' })),
    h('label', {}, 'Created within ', h('input', { name: 'since', value: params.get('since') || '', placeholder: '1h, 7d', size: 6 })),
    h('button', { type: 'submit' }, 'Show'))
  const query = new URLSearchParams()
  for (const k of [...FILTERS, 'after']) if (params.get(k)) query.set(k, params.get(k))
  query.set('limit', '50')
  fill(main, h('h2', {}, 'Tasks'), form)
  let page
  try {
    page = await api('api/tasks?' + query)
  } catch (err) {
    add(main, h('p', { class: 'bad', role: 'alert', id: 'list-error' }, err.message))
    return
  }
  const rows = page.tasks.map((t) => h('tr', { 'data-id': t.id },
    h('td', {}, h('a', { href: '#/task/' + encodeURIComponent(t.id) }, t.id)),
    h('td', { class: 'text' }, t.name),
    h('td', { class: 'text' }, t.queue),
    h('td', { class: 'text ' + t.state }, t.state),
    h('td', {}, t.attempt + '/' + t.maxAttempts),
    h('td', { class: 'text' }, when(t.createdAt)),
    h('td', { class: 'text' }, t.error || t.heldBack || '')))
  const bulk = params.get('state') === 'failed'
    ? actionButton('Retry all failed tasks that match', 'api/tasks/retry-failed', { queue: params.get('queue') || null, task: params.get('task') || null }, () => route())
    : null
  const nav = h('p', {},
    params.get('after') ? h('a', { href: '#/tasks?' + new URLSearchParams([...params].filter(([k]) => k !== 'after')) }, 'Newest') : null, ' ',
    page.nextAfter ? h('a', { href: '#/tasks?' + new URLSearchParams([...[...params].filter(([k]) => k !== 'after'), ['after', page.nextAfter]]), rel: 'next' }, 'Older →') : null)
  add(main, 
    h('p', { class: 'muted', id: 'list-count' }, page.tasks.length + ' shown' + (page.nextAfter ? ', more on the next page' : '')),
    bulk,
    table(['id', 'task', 'queue', 'state', 'attempt', 'created', 'error / held back'], rows, 'tasks, newest first'),
    nav)
}

function field(label, value) {
  return [h('dt', {}, label), h('dd', {}, value === null || value === undefined || value === '' ? '—' : String(value))]
}
function block(title, value) {
  return h('section', {}, h('h3', {}, title), h('pre', { class: 'json' }, json(value)))
}

VIEWS.task = async function (main, params, id, refreshing) {
  const t = await api('api/tasks/' + encodeURIComponent(id))
  const reload = () => route()
  const actions = h('p', { class: 'actions' },
    t.state === 'failed' || t.state === 'cancelled' ? actionButton('Retry task ' + t.id, 'api/tasks/' + encodeURIComponent(t.id) + '/retry', {}, reload) : null,
    ['failed', 'succeeded', 'cancelled'].includes(t.state) ? null : actionButton('Cancel task ' + t.id, 'api/tasks/' + encodeURIComponent(t.id) + '/cancel', {}, reload),
    h('button', { type: 'button', onclick: reload }, 'Refresh'))
  const attempts = (t.attempts || []).map((a) => h('tr', {},
    h('td', {}, a.attempt),
    h('td', { class: 'text ' + a.outcome }, a.outcome),
    h('td', { class: 'text' }, a.workerId || '—'),
    h('td', { class: 'text' }, when(a.startedAt)),
    h('td', {}, ms(a.durationMs)),
    h('td', { class: 'text' }, a.error ? a.error.message : '')))
  const progress = t.progress || null
  const deps = (t.dependsOn || []).map((d) => h('li', {}, h('a', { href: '#/task/' + encodeURIComponent(d.id) }, d.id), ' ' + d.name + ' — ' + d.state))
  fill(main, 
    h('h2', {}, 'Task ' + t.id + ' · ' + t.name),
    actions,
    h('dl', { class: 'fields' },
      field('state', t.state), field('queue', t.queue), field('attempt', t.attempt + ' of ' + t.maxAttempts),
      field('priority', t.priority), field('created', when(t.createdAt)), field('run at', when(t.runAt)),
      field('started', when(t.startedAt)), field('finished', when(t.finishedAt)), field('worker', t.workerId),
      field('group', t.groupKey), field('held back', t.heldBack), field('workflow', t.workflowId),
      field('truncated fields', (t.truncated || []).join(', '))),
    progress ? h('section', {}, h('h3', {}, 'Progress'),
      h('progress', { max: 100, value: Math.max(0, Math.min(100, Number(progress.value) || 0)), 'aria-label': 'progress' }),
      ' ' + progress.value + ' at ' + when(progress.at), progress.info !== undefined && progress.info !== null ? h('pre', { class: 'json' }, json(progress.info)) : null) : null,
    block('Payload', t.payload),
    t.result !== null && t.result !== undefined ? block('Result', t.result) : null,
    t.lastError ? h('section', {}, h('h3', {}, 'Last error' + (t.lastError.attempt ? ' (attempt ' + t.lastError.attempt + ')' : '')),
      h('p', { class: 'bad' }, String(t.lastError.message || '')),
      t.lastError.stack ? h('pre', { class: 'json' }, String(t.lastError.stack)) : null) : null,
    h('section', {}, h('h3', {}, 'Attempts'), attempts.length
      ? table(['attempt', 'outcome', 'worker', 'started', 'duration', 'error'], attempts, 'attempts of task ' + t.id)
      : h('p', { class: 'muted' }, 'No attempt recorded.')),
    h('section', {}, h('h3', {}, 'Depends on'), deps.length ? h('ul', {}, deps) : h('p', { class: 'muted' }, 'Nothing.')),
    t.workflowId ? h('p', {}, h('a', { href: '#/tasks?' + new URLSearchParams({ workflow: t.workflowId }) }, 'Tasks of this workflow')) : null)
  if (!refreshing && !['failed', 'succeeded', 'cancelled'].includes(t.state)) every(2000, () => VIEWS.task(main, params, id, true).catch(() => {}))
}
`
