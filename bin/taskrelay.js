#!/usr/bin/env node
// Node 22.18 strips TypeScript types and has everything the CLI uses. An
// older Node would fail below with a stack trace about ".ts": say what to
// do in one line instead. (In a checkout, npm scripts and npx run the
// project's own Node, a dev dependency.)
const [major, minor] = process.versions.node.split('.').map(Number)
if (major < 22 || (major === 22 && minor < 18)) {
  process.stderr.write(
    `taskrelay: needs Node.js 22.18 or newer, this is ${process.version}. ` +
      'Install a current Node (nodejs.org), or in a checkout run it through npm: npm run dev, npx taskrelay ...\n',
  )
  process.exit(1)
}
// In a checkout, run the TypeScript sources directly. Installed from the
// registry, Node will not strip types inside node_modules, so the published
// package runs the compiled dist/ instead.
const inNodeModules = import.meta.url.includes('/node_modules/')
if (!inNodeModules) {
  // A tasks module in the checkout (examples/tasks.ts) imports 'taskrelay' by
  // name: resolve it to the same sources the CLI runs, as the npm scripts'
  // --conditions=taskrelay-source does, not to a dist/ that may be missing
  // and would be a second copy of every class.
  const { registerHooks } = await import('node:module')
  registerHooks({
    resolve: (specifier, context, next) => next(specifier, { ...context, conditions: [...context.conditions, 'taskrelay-source'] }),
  })
}
const entry = inNodeModules ? '../dist/cli/main.js' : '../src/cli/main.ts'
await import(new URL(entry, import.meta.url).href)
