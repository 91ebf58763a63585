import type { Command } from 'commander'
import { CliError, EXIT } from './errors.ts'
import { examples, formatAge, renderTable, toJson } from './format.ts'
import { addSettingOptions } from './settings.ts'
import { ONE_SHOT, withDatabase } from './runtime.ts'
import { getWorkflow, isWorkflowId, type WorkflowDetail } from '../workflow/workflows.ts'
import type { WorkflowTask } from '../db/workflow-queries.ts'

/** `taskrelay workflow <id>`: a workflow's state, counts and its steps as a tree. */
export function registerWorkflowCommand(program: Command): void {
  const cmd = program
    .command('workflow')
    .summary("show one workflow: state, counts per state, failed step, its steps as a tree")
    .argument('<id>', 'workflow id (a UUID; tasks.workflow_id)')
    .option('--json', 'print the workflow and its tasks as JSON')
    .addHelpText('after', examples(['taskrelay workflow 0b6f5c1e-…', 'taskrelay list --workflow 0b6f5c1e-… --state failed']))
  addSettingOptions(cmd, ONE_SHOT)
  cmd.action((id: string, flags: Record<string, unknown>) => {
    if (!isWorkflowId(id)) throw new CliError(`expected a workflow id (a UUID such as 0b6f5c1e-3d1a-4c8e-9f00-5e2b7a1c9d42), got "${id}".`, EXIT.usage)
    return withDatabase(ONE_SHOT, flags, 'workflow', async (db, s) => {
      const wf = await getWorkflow(db.tr, id)
      if (!wf) throw new CliError(`workflow ${id} does not exist in schema "${s.process.schema}"; the ${s.process.schema}.workflow_status view lists every workflow.`)
      console.log(flags.json ? toJson(wf) : renderWorkflow(wf))
    })
  })
}

export function renderWorkflow(wf: WorkflowDetail): string {
  const now = Date.now()
  const counts = Object.entries(wf.counts)
    .filter(([k, n]) => k !== 'total' && n > 0)
    .map(([k, n]) => `${n} ${k}`)
    .join(', ')
  const head = [
    `workflow   ${wf.id} "${wf.name}"`,
    `state      ${wf.state}${wf.failedTaskId ? ` (task ${wf.failedTaskId} failed: ${wf.failedError ?? 'no message'})` : ''}`,
    `tasks      ${wf.counts.total}: ${counts || 'none'}`,
    `created    ${formatAge(wf.createdAt, now)}${wf.finishedAt ? `, finished ${formatAge(wf.finishedAt, now)}` : ''}`,
  ]
  const depth = depths(wf.tasks)
  const table = renderTable<WorkflowTask>(
    [
      { header: 'STEP', value: (t) => `${treePrefix(depth.get(t.id) ?? 0)}${t.name}`, max: 60 },
      { header: 'ID', value: (t) => t.id, right: true },
      { header: 'STATE', value: (t) => t.state },
      { header: 'ATTEMPT', value: (t) => `${t.attempt}/${t.maxAttempts}`, right: true },
      { header: 'AFTER', value: (t) => t.dependsOn.join(',') || '-', max: 40 },
      { header: 'ERROR', value: (t) => t.error ?? '', max: 60 },
    ],
    inTreeOrder(wf.tasks, depth),
  )
  return `${head.join('\n')}\n\n${table}`
}

/** "└─ " one level down, "│ └─ " two (table cells collapse runs of spaces, so each level is drawn). */
function treePrefix(depth: number): string {
  return depth === 0 ? '' : `${'│ '.repeat(depth - 1)}└─ `
}

/** A step's depth: one more than the deepest step it waits for (0: waits for none in the workflow). */
function depths(tasks: readonly WorkflowTask[]): Map<string, number> {
  const byId = new Map(tasks.map((t) => [t.id, t]))
  const depth = new Map<string, number>()
  // Ids grow along the edges (a step is inserted after what it waits for), so one pass in id order settles all.
  for (const t of [...tasks].sort((a, b) => Number(BigInt(a.id) - BigInt(b.id)))) {
    const parents = t.dependsOn.filter((d) => byId.has(d)).map((d) => depth.get(d) ?? 0)
    depth.set(t.id, parents.length === 0 ? 0 : Math.max(...parents) + 1)
  }
  return depth
}

/** By depth, then id: each level of the tree after the one it waits for. */
function inTreeOrder(tasks: readonly WorkflowTask[], depth: Map<string, number>): WorkflowTask[] {
  return [...tasks].sort((a, b) => (depth.get(a.id)! - depth.get(b.id)!) || Number(BigInt(a.id) - BigInt(b.id)))
}
