/**
 * `site ls` reads ListSites as a stream of pages and prints -o json a page at a time (issue 20:
 * 100,000 sites): the text must be exactly one pretty-printed JSON list, whatever the paging.
 */
import { describe, expect, it } from 'vitest';
import { wire } from '@spoke/shared';
import { COMMANDS } from './cli.js';
import type { OperatorApi } from './client.js';
import type { Ctx } from './command.js';

const site = (domain: string, aliases: string[] = []) =>
  wire.Site.fromPartial({ domain, platform: 'wp', server: 'web-1', status: 'installed', aliases, createdMs: 1_700_000_000_000 });

async function siteLs(pages: wire.Site[][], json: boolean, failAfter?: number): Promise<{ out: string; code: number | Error }> {
  const out: string[] = [];
  const api = {
    async *sitePages() {
      for (const [i, p] of pages.entries()) {
        if (i === failAfter) throw Object.assign(new Error('the master went away'), { code: 'MASTER_UNREACHABLE' });
        yield p;
      }
    },
  } as unknown as OperatorApi;
  const ctx: Ctx = { io: { out: (s) => out.push(s), err: () => undefined }, json, conn: {}, api: () => api };
  const cmd = COMMANDS['site ls'];
  if (!cmd) throw new Error('no site ls');
  const code = await cmd.run(ctx, [] as unknown as [string, string], {}).catch((e: Error) => e);
  return { out: out.join(''), code };
}

describe('site ls over pages', () => {
  const pages = [[site('a.test', ['www.a.test']), site('b.test')], [site('c.test')], [site('d.test'), site('e.test', ['x.test', 'y.test'])]];

  it('-o json: one list, the same text as printing them all at once', async () => {
    const { out, code } = await siteLs(pages, true);
    expect(code).toBe(0);
    const list = JSON.parse(out) as { domain: string; aliases: string[]; https: unknown }[];
    expect(list.map((s) => s.domain)).toEqual(['a.test', 'b.test', 'c.test', 'd.test', 'e.test']);
    expect(list[4]?.aliases).toEqual(['x.test', 'y.test']);
    expect(out).toBe(`${JSON.stringify(list, null, 2)}\n`);
    // paging does not change the text
    expect((await siteLs([pages.flat()], true)).out).toBe(out);
    const [p1 = [], p2 = [], p3 = []] = pages;
    expect((await siteLs([[], p1, [], p2, p3, []], true)).out).toBe(out); // empty pages print nothing
  });

  it('-o json with no sites is an empty list; the table says how to add one', async () => {
    expect((await siteLs([], true)).out).toBe('[]\n');
    expect((await siteLs([], false)).out).toContain('no sites (spoke site install DOMAIN --platform P)');
  });

  it('the table lists every page', async () => {
    const { out } = await siteLs(pages, false);
    expect(out.split('\n').filter((l) => /^[a-e]\.test /.test(l))).toHaveLength(5);
    expect(out).toContain('x.test,y.test');
  });

  it('an error after some pages fails the command (its code reaches the operator)', async () => {
    const { code } = await siteLs(pages, true, 2);
    expect(code).toBeInstanceOf(Error);
    expect((code as Error & { code: string }).code).toBe('MASTER_UNREACHABLE');
  });
});
