/**
 * `spoke cluster …`: grouping agent servers into a cluster that acts as one web server.
 */
import { wire } from '@spoke/shared/client';
import { print, type Command } from './command.js';
import { serverJson } from './format.js';
import { serverTable } from './server.js';
import { joinedLine, leftLine, platformsOf } from './fleet.js';

/** `spoke cluster …`. */
export const clusterCommands: Record<string, Command> = {
  'cluster create': {
    usage: 'cluster create NAME --member A [--member B ...]',
    summary: 'group agent servers into a cluster that acts as one web server',
    options: { member: { type: 'string', multiple: true } },
    args: [1, 1],
    async run(ctx, [name], o) {
      const s = await ctx.api().call('createCluster', {
        name,
        members: (o.member as string[] | undefined) ?? [],
      });
      print(ctx, serverJson(s), () => `created cluster ${s.name} with ${s.members.join(', ')}\n`);
      return 0;
    },
  },
  'cluster add': {
    usage: 'cluster add NAME MEMBER',
    summary: 'add an agent server to a cluster',
    args: [2, 2],
    async run(ctx, [cluster, member]) {
      const s = await ctx.api().call('addClusterMember', { cluster, member, deleteFiles: false });
      const platforms = await platformsOf(ctx, cluster);
      print(ctx, serverJson(s), () => `cluster ${s.name}: ${s.members.join(', ')}\n${joinedLine(member, platforms)}`);
      return 0;
    },
  },
  'cluster remove': {
    usage: 'cluster remove NAME MEMBER [--delete-files]',
    summary:
      "take an agent server out of a cluster (it stays enrolled); it stops serving the cluster's platforms, and with --delete-files their trees are deleted there (user data kept)",
    options: { 'delete-files': { type: 'boolean' } },
    args: [2, 2],
    async run(ctx, [cluster, member], o) {
      const platforms = await platformsOf(ctx, cluster);
      const deleteFiles = o['delete-files'] === true;
      const s = await ctx.api().call('removeClusterMember', { cluster, member, deleteFiles });
      print(ctx, serverJson(s), () => `cluster ${s.name}: ${s.members.join(', ')}\n${leftLine(member, cluster, platforms, deleteFiles)}`);
      return 0;
    },
  },
  'cluster ls': {
    usage: 'cluster ls',
    summary: 'list clusters and their members',
    args: [0, 0],
    async run(ctx) {
      const r = await ctx.api().call('listServers', {});
      const cl = r.servers.filter((s) => s.kind === wire.ServerKind.SERVER_KIND_CLUSTER);
      print(ctx, cl.map(serverJson), () => (cl.length ? serverTable(cl) : 'no clusters\n'));
      return 0;
    },
  },
};
