#!/usr/bin/env node
// In a checkout, run the TypeScript sources directly (Node >= 22.18 strips
// types). Installed from the registry, Node will not strip types inside
// node_modules, so the published package runs the compiled dist/ instead.
const inNodeModules = import.meta.url.includes('/node_modules/')
const entry = inNodeModules ? '../dist/cli/main.js' : '../src/cli/main.ts'
await import(new URL(entry, import.meta.url).href)
