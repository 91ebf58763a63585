/**
 * The page script's base (served as app.js with the views after it): DOM
 * builders that only ever set text (never innerHTML), the JSON client, the
 * session and login form, and the hash router that keeps each view's state
 * in the URL so a link can be shared.
 */
export const SCRIPT_CORE = String.raw`
'use strict'
const $ = (sel) => document.querySelector(sel)
const state = { session: { auth: 'none', methods: [], operator: false, csrf: null }, timer: null }

// h('td', { class: 'x' }, 'text', child): strings become text nodes, so data is never parsed as HTML.
function h(tag, attrs, ...children) {
  const el = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v)
    else el.setAttribute(k, v === true ? '' : String(v))
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : String(c))
  return el
}
// replaceChildren/append, but flattening arrays and skipping null like h() does.
function fill(el, ...children) {
  el.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false))
}
function add(el, ...children) {
  el.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false))
}
const SVG = 'http://www.w3.org/2000/svg'
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag)
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v))
  for (const c of children) el.append(c instanceof Node ? c : String(c))
  return el
}
function table(headers, rows, caption) {
  return h('table', {}, caption ? h('caption', { class: 'sr-only' }, caption) : null,
    h('thead', {}, h('tr', {}, headers.map((x) => h('th', { scope: 'col' }, x)))),
    h('tbody', {}, rows))
}
function when(iso) {
  return iso ? new Date(iso).toLocaleString() : '—'
}
function age(ms) {
  if (ms === null || ms === undefined) return '—'
  const sec = Math.round(ms / 1000)
  return sec < 120 ? sec + ' s' : sec < 7200 ? Math.round(sec / 60) + ' min' : Math.round(sec / 3600) + ' h'
}
function ms(v) {
  if (v === null || v === undefined) return '—'
  return v < 1000 ? Math.round(v) + ' ms' : (v / 1000).toFixed(1) + ' s'
}
function json(v) {
  return v === undefined ? '' : typeof v === 'string' ? v : JSON.stringify(v, null, 2)
}

async function api(path, init) {
  const res = await fetch(path, init)
  let body = null
  try { body = await res.json() } catch { /* not JSON */ }
  if (!res.ok) {
    const err = new Error((body && body.error) || res.status + ' ' + res.statusText)
    err.status = res.status
    throw err
  }
  return body
}
// Announced through the aria-live region, so screen readers hear what an action did.
function say(text, bad) {
  const el = $('#status')
  el.textContent = text
  el.className = bad ? 'status bad' : 'status'
}
async function act(path, body, what) {
  try {
    const r = await api(path, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-taskrelay-csrf': state.session.csrf || '' },
      body: JSON.stringify(body || {}),
    })
    say(r.message)
    return r
  } catch (err) {
    if (err.status === 401) await loadSession()
    say(what + ': ' + err.message, true)
    return null
  }
}
function actionButton(label, path, body, after) {
  if (!state.session.operator) return null
  return h('button', { type: 'button', onclick: async (e) => {
    e.target.disabled = true
    const r = await act(path, body, label)
    e.target.disabled = false
    if (r && after) after(r)
  } }, label)
}

async function loadSession() {
  try { state.session = await api('api/session') } catch { /* stays read-only */ }
  renderAuth()
}
function renderAuth() {
  const box = $('#auth')
  const sess = state.session
  box.replaceChildren()
  if (sess.operator && sess.auth === 'login') {
    box.append(h('span', { class: 'muted' }, 'operator'), ' ', h('button', { type: 'button', id: 'logout', onclick: logout }, 'Log out'))
  } else if (sess.auth === 'login') {
    const fields = []
    if (sess.methods.includes('password')) {
      fields.push(h('label', {}, 'User ', h('input', { name: 'user', autocomplete: 'username' })))
      fields.push(h('label', {}, 'Password ', h('input', { name: 'password', type: 'password', autocomplete: 'current-password' })))
    }
    if (sess.methods.includes('token') && !sess.methods.includes('password')) {
      fields.push(h('label', {}, 'Token ', h('input', { name: 'token', type: 'password', autocomplete: 'current-password' })))
    }
    box.append(h('form', { id: 'login', onsubmit: login }, fields, h('button', { type: 'submit' }, 'Log in')))
  } else if (sess.auth === 'none') {
    box.append(h('span', { class: 'muted' }, 'read-only (no credentials configured)'))
  }
}
async function login(e) {
  e.preventDefault()
  const body = Object.fromEntries(new FormData(e.target))
  try {
    await api('api/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
    await loadSession()
    say('logged in')
    route()
  } catch (err) {
    say('log in: ' + err.message, true)
  }
}
async function logout() {
  await act('api/logout', {}, 'log out')
  await loadSession()
  route()
}

// #/view?params — the view and its filters live in the hash, so the URL can be shared.
function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/queues'
  const q = raw.indexOf('?')
  return { path: q < 0 ? raw : raw.slice(0, q), params: new URLSearchParams(q < 0 ? '' : raw.slice(q + 1)) }
}
function go(path, params) {
  const qs = params ? new URLSearchParams([...params].filter(([, v]) => v !== '')).toString() : ''
  location.hash = '#' + path + (qs ? '?' + qs : '')
}
const VIEWS = {}
async function route() {
  clearInterval(state.timer)
  const { path, params } = parseHash()
  const m = /^\/task\/(.+)$/.exec(path)
  const name = m ? 'task' : path.replace(/^\//, '')
  const view = VIEWS[name] || VIEWS.queues
  for (const a of document.querySelectorAll('nav a')) {
    if (a.dataset.view === (m ? 'tasks' : name)) a.setAttribute('aria-current', 'page')
    else a.removeAttribute('aria-current')
  }
  const main = $('#view')
  try {
    await view(main, params, m ? decodeURIComponent(m[1]) : null)
  } catch (err) {
    fill(main, h('h2', {}, 'Cannot show this view'), h('p', { class: 'bad', role: 'alert' }, err.message))
  }
}
// Refreshes only while nobody is using the view, so a keyboard user's focus is never pulled away.
function every(msInterval, fn) {
  state.timer = setInterval(() => {
    if (!$('#view').contains(document.activeElement)) fn()
  }, msInterval)
}
`
