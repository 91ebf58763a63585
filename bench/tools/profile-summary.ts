/**
 * Summarize V8 .cpuprofile files (from node --cpu-prof): self time by
 * package/file and the top functions, so a profile can be read in a terminal.
 *
 *   node bench/tools/profile-summary.ts <file.cpuprofile> [--top 25]
 */
import { readFileSync } from 'node:fs'

interface Node {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number }
  hitCount?: number
  children?: number[]
}
interface Profile {
  nodes: Node[]
  startTime: number
  endTime: number
  samples: number[]
  timeDeltas: number[]
}

const file = process.argv[2]
if (!file) {
  console.error('usage: node bench/tools/profile-summary.ts <file.cpuprofile> [--top N]')
  process.exit(2)
}
const topIdx = process.argv.indexOf('--top')
const top = topIdx > 0 ? Number(process.argv[topIdx + 1]) : 25

const p = JSON.parse(readFileSync(file, 'utf8')) as Profile
const byId = new Map(p.nodes.map((n) => [n.id, n]))
const selfUs = new Map<number, number>()
for (let i = 0; i < p.samples.length; i++) {
  const id = p.samples[i]!
  selfUs.set(id, (selfUs.get(id) ?? 0) + (p.timeDeltas[i] ?? 0))
}
const totalUs = p.endTime - p.startTime

function area(url: string, fn: string): string {
  if (!url) return fn.startsWith('(') ? fn : '(native/vm)'
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)
  if (nm) return nm[1]!
  if (url.startsWith('node:')) return url.split('/')[0]!.replace(/:.*$/, ':') + url.slice(5).split('/')[0]
  const m = /\/work\/[^/]+\/(.*)$/.exec(url) ?? /([^/]+\/[^/]+)$/.exec(url)
  return m ? m[1]! : url
}

const byArea = new Map<string, number>()
const byFn = new Map<string, number>()
for (const [id, us] of selfUs) {
  const n = byId.get(id)!
  const a = area(n.callFrame.url, n.callFrame.functionName)
  byArea.set(a, (byArea.get(a) ?? 0) + us)
  const key = `${n.callFrame.functionName || '(anonymous)'}  ${a}:${n.callFrame.lineNumber + 1}`
  byFn.set(key, (byFn.get(key) ?? 0) + us)
}
const pct = (us: number) => ((us / totalUs) * 100).toFixed(1).padStart(5) + ' %'
const ms = (us: number) => (us / 1000).toFixed(0).padStart(7) + ' ms'
console.log(`${file}: ${(totalUs / 1e6).toFixed(2)} s profiled`)
console.log('\nself time by package / file:')
for (const [a, us] of [...byArea].sort((x, y) => y[1] - x[1]).slice(0, top)) console.log(`${ms(us)} ${pct(us)}  ${a}`)
console.log('\ntop functions by self time:')
for (const [f, us] of [...byFn].sort((x, y) => y[1] - x[1]).slice(0, top)) console.log(`${ms(us)} ${pct(us)}  ${f}`)
