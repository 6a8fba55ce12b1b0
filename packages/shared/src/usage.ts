/**
 * Help text and "did you mean" for the three command lines (spoke, spoke-master, spoke-agent),
 * so each answers `--help` the same way.
 */

/** One command's help: usage line, what it does, each flag explained, examples. */
export interface HelpSpec {
  usage: string;
  summary: string;
  /** `[flag, what it does]`, e.g. `['--no-wait', 'print the task id and return at once']`. */
  flags: [string, string][];
  examples: string[];
}

/** The help text of one command. */
export function formatHelp(prog: string, h: HelpSpec): string {
  const w = Math.max(0, ...h.flags.map(([f]) => f.length));
  const flags = h.flags.length ? `\nflags:\n${h.flags.map(([f, d]) => `  ${f.padEnd(w)}  ${d}`).join('\n')}\n` : '';
  return `usage: ${prog} ${h.usage}\n\n${h.summary}\n${flags}\nexample${h.examples.length > 1 ? 's' : ''}:\n${h.examples.map((e) => `  ${e}`).join('\n')}\n`;
}

/** Edit distance (insert, delete, substitute) between two short strings. */
function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min((prev[j] as number) + 1, (cur[j - 1] as number) + 1, (prev[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length] as number;
}

/**
 * The candidate closest to `word` when it is close enough to be a typo (or a prefix of exactly
 * one candidate); undefined otherwise.
 */
export function didYouMean(word: string, candidates: readonly string[]): string | undefined {
  const prefixed = candidates.filter((c) => word.length >= 2 && c.startsWith(word));
  if (prefixed.length === 1) return prefixed[0];
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = distance(word, c);
    if (d < bestD) [best, bestD] = [c, d];
  }
  return best !== undefined && bestD <= Math.max(1, Math.floor(Math.min(word.length, best.length) / 3)) ? best : undefined;
}

/**
 * The one-line message for node:util parseArgs' "Unknown option" error, with a suggestion when
 * the flag looks like a typo of a known one; other messages pass through (first line only).
 */
export function unknownOptionMessage(message: string, known: readonly string[]): string {
  const first = message.split('\n')[0] as string;
  const m = /Unknown option '(-{1,2})([^'=]+)'/.exec(first);
  if (!m) return first;
  const guess = didYouMean(m[2] as string, known);
  return `unknown flag ${m[1]}${m[2]}${guess ? ` (did you mean --${guess}?)` : ''}`;
}
