/**
 * The shape of the code, checked: master and agent never import each other, shared imports
 * neither, nobody deep-imports another package, and the generated wire code is used only at the
 * edges (gRPC handlers, the agent hub, the agent's connection, the CLI client). Tests in test/
 * enter a package through its index or its testkit (`@spoke/<pkg>/testkit`), never its files,
 * and no daemon code loads a testkit.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..');

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (name === 'gen' || name === 'node_modules' || name === 'dist') continue;
    if (statSync(p).isDirectory()) out.push(...sources(p));
    else if (name.endsWith('.ts')) out.push(p);
  }
  return out;
}

function imports(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(/(?:import|export)[^'"]*?from\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g)].map((m) => (m[1] ?? m[2]) as string);
}

const pkgs = ['shared', 'master', 'agent'] as const;
const files = Object.fromEntries(pkgs.map((p) => [p, sources(join(ROOT, 'packages', p, 'src'))])) as Record<(typeof pkgs)[number], string[]>;

/** Files allowed to touch wire types: the edges. */
const WIRE_EDGES = [
  /^packages\/master\/src\/api\//,
  /^packages\/master\/src\/servers\/hub\.ts$/,
  /^packages\/master\/src\/cli\//,
  /^packages\/agent\/src\/connection\.ts$/,
  /^packages\/agent\/src\/enroll\.ts$/,
  /^packages\/agent\/src\/(sync|treefetch|streamsync)\.ts$/,
  /^packages\/shared\/src\/(wire|wireoperator|index|client|grpc|rpc|commandwire)\.ts$/,
];

/** A package's test door, for tests only. */
const TESTKIT = /^@spoke\/(shared|master|agent)\/testkit$/;
/** Files of a package that only tests and benchmarks load: tests, their helpers and child processes, testkits. */
const TEST_SUPPORT = /(\.test\.ts|\/testutil\.ts|\/testkit\.ts|\/testing\.ts|-child\.ts|\/bench\.ts)$/;

describe('architecture', () => {
  it('master and agent never import each other; shared imports neither', () => {
    const bad: string[] = [];
    for (const p of pkgs) {
      for (const f of files[p]) {
        for (const i of imports(f)) {
          const forbidden = { shared: ['master', 'agent'], master: ['agent'], agent: ['master'] }[p];
          if (forbidden.some((o) => i === `@spoke/${o}` || i.startsWith(`@spoke/${o}/`) || i.includes(`${o}/src`))) {
            bad.push(`${relative(ROOT, f)} imports ${i}`);
          }
        }
      }
    }
    expect(bad).toEqual([]);
  });

  it("packages are entered only through their index (and shared's lean client door; tests: or their testkit)", () => {
    const bad = pkgs.flatMap((p) =>
      files[p].flatMap((f) =>
        imports(f)
          .filter((i) => /^@spoke\/\w+\//.test(i) && i !== '@spoke/shared/client' && !(TEST_SUPPORT.test(f) && TESTKIT.test(i)))
          .map((i) => `${relative(ROOT, f)} imports ${i}`),
      ),
    );
    expect(bad).toEqual([]);
  });

  it('no daemon code imports a testkit', () => {
    const bad = pkgs.flatMap((p) =>
      files[p].filter((f) => !TEST_SUPPORT.test(f) && imports(f).some((i) => TESTKIT.test(i) || /testkit\.js$/.test(i))).map((f) => relative(ROOT, f)),
    );
    expect(bad).toEqual([]);
  });

  it('tests in test/ enter packages through their index or their testkit, and never reach past types', () => {
    const tests = sources(join(ROOT, 'test'));
    expect(tests.length).toBeGreaterThan(10);
    const bad = tests.flatMap((f) => [
      ...imports(f)
        .filter((i) => /(^|\/)packages\//.test(i) || (/^@spoke\//.test(i) && !/^@spoke\/\w+$/.test(i) && !TESTKIT.test(i)))
        .map((i) => `${relative(ROOT, f)} imports ${i}`),
      // a cast through unknown is how a test reaches a private field or fakes a component
      ...(/\bas unknown as\b|\bas any\b/.test(readFileSync(f, 'utf8')) ? [`${relative(ROOT, f)} casts through unknown/any`] : []),
    ]);
    expect(bad).toEqual([]);
  });

  it('generated wire code is used only at the edges', () => {
    const bad: string[] = [];
    for (const p of pkgs) {
      for (const f of files[p]) {
        const rel = relative(ROOT, f);
        if (WIRE_EDGES.some((re) => re.test(rel)) || TEST_SUPPORT.test(rel)) continue;
        const text = readFileSync(f, 'utf8');
        if (
          /\bwire\b[^\n]*from '@spoke\/shared(?:\/client)?'|from ['"][./]*gen\//.test(text) ||
          /import[^;]*\bwire\b[^;]*from '@spoke\/shared(?:\/client)?'/s.test(text)
        ) {
          bad.push(rel);
        }
      }
    }
    expect(bad).toEqual([]);
  });

  it('only config modules read process.env', () => {
    // entry points (main.ts, up.ts: the composition roots) and config modules
    const allowed = [/options\.ts$/, /config\.ts$/, /\/main\.ts$/, /\/up\.ts$/, /\.test\.ts$/, /cli\/client\.ts$/];
    const bad = pkgs.flatMap((p) =>
      files[p].filter((f) => !allowed.some((re) => re.test(f)) && /process\.env/.test(readFileSync(f, 'utf8'))).map((f) => relative(ROOT, f)),
    );
    expect(bad).toEqual([]);
  });

  it('package unit tests replace no module (vitest runs them without a fresh module graph per file): dependencies are passed in', () => {
    const bad = pkgs.flatMap((p) =>
      files[p].filter((f) => /\.test\.ts$/.test(f) && /\bvi\.(mock|doMock)\(/.test(readFileSync(f, 'utf8'))).map((f) => relative(ROOT, f)),
    );
    expect(bad).toEqual([]);
  });

  it('master statements are never switched into pluck/raw/expand mode (openStore caches one per SQL text)', () => {
    const bad = files.master.filter((f) => !/\.test\.ts$/.test(f) && /\.(pluck|raw|expand)\(/.test(readFileSync(f, 'utf8'))).map((f) => relative(ROOT, f));
    expect(bad).toEqual([]);
  });

  it('master files import no cycle (type imports count too): e.g. the site tasks and their siblings', () => {
    const src = join(ROOT, 'packages/master/src');
    const graph = new Map<string, string[]>();
    for (const f of files.master.filter((x) => !x.endsWith('.test.ts'))) {
      graph.set(
        f,
        imports(f)
          .filter((i) => i.startsWith('.'))
          .map((i) => resolve(dirname(f), i).replace(/\.js$/, '.ts')),
      );
    }
    const cycles: string[] = [];
    const state = new Map<string, 'open' | 'done'>();
    const visit = (f: string, path: string[]): void => {
      if (state.get(f) === 'done') return;
      if (state.get(f) === 'open') {
        cycles.push([...path.slice(path.indexOf(f)), f].map((x) => relative(src, x)).join(' -> '));
        return;
      }
      state.set(f, 'open');
      for (const t of graph.get(f) ?? []) visit(t, [...path, f]);
      state.set(f, 'done');
    };
    for (const f of graph.keys()) visit(f, []);
    expect(cycles).toEqual([]);
  });

  it('the floor rooms of the master stay the floor: namespace/ imports no other room, tasks/ only namespace/', () => {
    const src = join(ROOT, 'packages/master/src');
    const roomOf = (f: string) => (relative(src, f).includes('/') ? (relative(src, f).split('/')[0] ?? '') : '(top)');
    const allowed: Record<string, string[]> = { namespace: ['namespace'], tasks: ['tasks', 'namespace'] };
    const bad: string[] = [];
    for (const f of files.master.filter((x) => !x.endsWith('.test.ts'))) {
      const room = roomOf(f);
      const ok = allowed[room];
      if (!ok) continue;
      for (const i of imports(f).filter((x) => x.startsWith('.'))) {
        const target = resolve(dirname(f), i);
        // the shared domain types (types.ts) are open to every room
        if (relative(src, target) === 'types.js') continue;
        if (!ok.includes(roomOf(target))) bad.push(`${relative(src, f)} imports ${relative(src, target)}`);
      }
    }
    expect(bad).toEqual([]);
  });
});
