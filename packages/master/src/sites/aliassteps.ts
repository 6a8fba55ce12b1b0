/**
 * The alias tasks' step lists (site.alias.add, site.alias.rm, site.alias.redirect), run by
 * SiteTasks (tasks.ts) over the shared site operations (ops.ts).
 */
import type { Step } from '../tasks/steps.js';
import type { ConfigureUndo, SiteOps, WriteUndo } from './ops.js';

/** `site alias add|rm`: the alias in the namespace (an old name of a renamed site is released), the site files, converge, the vhost. */
export function aliasSteps(ops: SiteOps, domain: string, platform: string, alias: string, add: boolean, state: { result?: unknown }): Step[] {
  const ns = ops.ns;
  // An old name of a renamed site (formernames.ts) is released by `alias rm` too; it was never served, only redirected.
  let former = false;
  const was = (aliases: string[]) => (add ? aliases.filter((a) => a !== alias) : former ? aliases : [...aliases, alias].sort());
  return [
    {
      name: add ? 'add-alias' : 'remove-alias',
      do: async (ctx) => {
        const s = ops.activeSite(domain, add ? 'add an alias to' : 'remove an alias of');
        former = !add && (s.formerNames ?? []).some((f) => f.name === alias);
        if (former) {
          ns.dropFormerName(domain, alias);
          ctx.log(`released ${alias}, the old name of ${domain}: it no longer redirects and any site may take it`);
          return { domain, alias, add, former };
        }
        if (add) ns.addAlias(domain, alias);
        else ns.removeAlias(domain, alias);
        ctx.log(`${add ? 'added' : 'removed'} alias ${alias} ${add ? 'to' : 'of'} ${domain}`);
        const note = add ? ops.httpsCoverageNote(domain, alias) : null;
        if (note) ctx.log(note, 'warn');
        return { domain, alias, add };
      },
      undo: async (ctx, data) => {
        const d = data as { domain: string; alias: string; add: boolean; former?: boolean };
        if (!ops.siteExists(d.domain)) return;
        if (d.former) return ctx.log(`${d.alias} stays released (an old name is not put back)`, 'warn');
        const has = ns.getSite(d.domain).aliases.includes(d.alias);
        if (d.add && has) ns.removeAlias(d.domain, d.alias);
        if (!d.add && !has) ns.addAlias(d.domain, d.alias);
        ctx.log(`${d.add ? 'removed' : 'restored'} alias ${d.alias}`);
      },
    },
    {
      name: 'write-files',
      do: async (ctx) => {
        const s = ns.getSite(domain);
        const before = was(s.aliases);
        return ops.writeFiles(ctx, platform, { site: domain, previousAliases: { domain, aliases: before } });
      },
      undo: async (ctx, data) => ops.restoreFiles(ctx, data as WriteUndo),
    },
    { name: 'converge', do: async (ctx) => void (await ops.converge(ctx, platform)) },
    {
      name: 'configure-site',
      do: async (ctx) => {
        const s = ns.getSite(domain);
        const old = was(s.aliases);
        const enabled = s.status !== 'disabled';
        const r = await ops.configure(ctx, domain, enabled, { revert: { enabled, aliases: old } });
        state.result = { domain, aliases: s.aliases };
        return { ...r, aliases: old };
      },
      undo: async (ctx, data) => {
        const d = data as ConfigureUndo;
        await ops.reconfigure(ctx, d, d.enabled);
      },
    },
  ];
}

/** `site alias redirect on|off`: the flag, then the vhost. */
export function redirectSteps(ops: SiteOps, domain: string, on: boolean, state: { result?: unknown }): Step[] {
  const ns = ops.ns;
  return [
    {
      name: 'set-redirect',
      do: async (ctx) => {
        const before = ops.activeSite(domain, 'change the alias redirect of').redirectAliases;
        ns.setSiteRedirectAliases(domain, on);
        ctx.log(on ? `the aliases of ${domain} answer with a 301 to http://${domain}/` : `the aliases of ${domain} serve the site`);
        return { domain, before };
      },
      undo: async (ctx, data) => {
        const d = data as { domain: string; before: boolean };
        if (ops.siteExists(d.domain)) ns.setSiteRedirectAliases(d.domain, d.before);
        ctx.log(`alias redirect of ${d.domain} is ${d.before ? 'on' : 'off'} again`);
      },
    },
    {
      name: 'configure-site',
      do: async (ctx) => {
        const s = ns.getSite(domain);
        const enabled = s.status !== 'disabled';
        await ops.configure(ctx, domain, enabled, { revert: { enabled, aliases: s.aliases } });
        state.result = { domain, redirectAliases: on };
      },
    },
  ];
}
