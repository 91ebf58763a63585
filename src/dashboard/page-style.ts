/** The page's stylesheet (served as app.css): plain, readable, visible focus. */
export const STYLE = `
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #1d1d1f; }
header { display: flex; gap: 1.5rem; align-items: center; flex-wrap: wrap; padding: .7rem 1.5rem; background: #f5f5f7; border-bottom: 1px solid #e3e3e6; }
main { padding: 0 1.5rem 2rem; }
h1 { font-size: 1.3rem; margin: 0; }
h2 { font-size: 1.1rem; margin: 1.4rem 0 .5rem; }
h3 { font-size: 1rem; margin: 1rem 0 .3rem; }
nav ul { display: flex; gap: 1rem; list-style: none; margin: 0; padding: 0; }
nav a[aria-current="page"], a[aria-current="true"] { font-weight: 600; text-decoration: none; }
#auth { margin-left: auto; }
#auth form, #filters { display: flex; gap: .6rem; flex-wrap: wrap; align-items: center; }
table { border-collapse: collapse; width: 100%; margin-bottom: .8rem; }
th, td { text-align: left; padding: .25rem .6rem; border-bottom: 1px solid #e3e3e6; white-space: nowrap; }
td.text { white-space: normal; max-width: 36rem; overflow-wrap: break-word; }
.muted { color: #6e6e73; }
.bad, .failed, .cancelled, .lost { color: #b3261e; }
.succeeded { color: #1b7f3b; }
.status { min-height: 1.4em; margin: .5rem 1.5rem 0; font-weight: 600; color: #1b7f3b; }
.status.bad { color: #b3261e; }
input, select, button { font: inherit; padding: .25rem .5rem; }
button { cursor: pointer; border: 1px solid #8e8e93; border-radius: 4px; background: #fff; }
button + button { margin-left: .4rem; }
a { color: #0b57d0; }
a:focus-visible, button:focus-visible, input:focus-visible, select:focus-visible { outline: 3px solid #0b57d0; outline-offset: 2px; }
pre.json { background: #f5f5f7; padding: .8rem; overflow: auto; max-height: 24rem; white-space: pre-wrap; overflow-wrap: anywhere; }
dl.fields { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; }
dl.fields dt { color: #6e6e73; }
dl.fields dd { margin: 0; }
.queue-chart { display: inline-block; margin: 0 1.5rem 1rem 0; vertical-align: top; }
.chart { display: block; margin-bottom: .3rem; background: #fbfbfd; border: 1px solid #e3e3e6; }
.chart .axis { font-size: 10px; fill: #6e6e73; }
.chart rect.ok { fill: #34a853; }
.chart rect.fail { fill: #d93025; }
.chart .line { stroke-width: 2; }
.s1 { stroke: #1a73e8; fill: #1a73e8; } .s2 { stroke: #8ab4f8; fill: #8ab4f8; } .s3 { stroke: #e37400; fill: #e37400; } .s4 { stroke: #fbbc04; fill: #fbbc04; }
.chart path.line { fill: none; }
.legend .key { margin-right: 1rem; }
.legend .key::before { content: ""; display: inline-block; width: .8em; height: .8em; margin-right: .3em; vertical-align: -1px; background: currentColor; }
.key.ok { color: #34a853; } .key.fail { color: #d93025; }
.key.s1 { color: #1a73e8; } .key.s2 { color: #8ab4f8; } .key.s3 { color: #e37400; } .key.s4 { color: #fbbc04; }
.running-list a { display: block; }
.sr-only { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); }
`
