import type { ServerResponse } from 'node:http'
import { SECURITY_HEADERS } from './guard.ts'
import { STYLE } from './page-style.ts'
import { SCRIPT_CORE } from './script-core.ts'
import { SCRIPT_QUEUES } from './script-queues.ts'
import { SCRIPT_TASKS } from './script-tasks.ts'
import { SCRIPT_MORE } from './script-more.ts'

/**
 * The dashboard's one page, its script (app.js) and stylesheet (app.css): no
 * build step, no assets from elsewhere. Everything it shows goes in through
 * textContent, never as HTML, and the Content-Security-Policy allows scripts
 * and styles only from these two paths, so an injected tag or handler
 * attribute cannot run. Every URL in it is relative, so it works under any
 * mount prefix.
 */
export const DASHBOARD_PAGE_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
  "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

export const DASHBOARD_SCRIPT = SCRIPT_CORE + SCRIPT_QUEUES + SCRIPT_TASKS + SCRIPT_MORE

export const DASHBOARD_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>taskrelay dashboard</title>
<link rel="stylesheet" href="app.css">
<script src="app.js" defer></script>
</head>
<body>
<header>
  <h1>taskrelay</h1>
  <nav aria-label="views"><ul>
    <li><a href="#/queues" data-view="queues">Queues</a></li>
    <li><a href="#/tasks" data-view="tasks">Tasks</a></li>
    <li><a href="#/schedules" data-view="schedules">Schedules</a></li>
    <li><a href="#/workers" data-view="workers">Workers</a></li>
  </ul></nav>
  <div id="auth"></div>
</header>
<div id="status" class="status" role="status" aria-live="polite"></div>
<main id="view"><p class="muted">loading…</p></main>
</body>
</html>
`

const ASSETS: Record<string, { type: string; body: string }> = {
  '/': { type: 'text/html; charset=utf-8', body: DASHBOARD_PAGE },
  '/app.js': { type: 'text/javascript; charset=utf-8', body: DASHBOARD_SCRIPT },
  '/app.css': { type: 'text/css; charset=utf-8', body: STYLE },
}

/** Answer GET of the page or one of its assets; false when the path is none of them. */
export function servePage(path: string, res: ServerResponse): boolean {
  const asset = ASSETS[path]
  if (!asset) return false
  res.writeHead(200, { ...SECURITY_HEADERS, 'content-type': asset.type, 'content-security-policy': DASHBOARD_PAGE_CSP })
  res.end(asset.body)
  return true
}
