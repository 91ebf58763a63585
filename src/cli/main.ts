/**
 * Entry point of the `taskrelay` command (bin/taskrelay.js imports this file).
 * The program itself is built in program.ts, so tests can import it without
 * running it.
 */
import { main } from './program.ts'

// Explicit exit: a one-shot command is done when its action returns, even if a
// library left a timer or socket behind. Long-running commands exit from their
// signal handler instead and never get here.
process.exit(await main(process.argv))
