/**
 * Room `tasks/`: the task engine.
 *
 * - engine.ts   `TaskEngine`: rows in SQLite are the truth, memory only schedules them; locks per
 *               entity (FIFO), a concurrency limit, the state table (queued → running →
 *               succeeded | failed | cancelled), cancel, recovery at start-up, watching a task
 * - steps.ts    steps with undo: a task as an ordered list of steps whose finished part is kept
 *               on the task row, undone in reverse on failure or after an interrupted run
 *
 * What the tasks do lives with their noun (servers/verify.ts, platforms/, sites/).
 */
export { TaskEngine, isFinal } from './engine.js';
export type { TaskContext } from './engine.js';
export { StepLog, resumeRollback, runSteps, type Step } from './steps.js';
