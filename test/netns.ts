/**
 * A slow network for e2e tests: a network namespace joined to this one by a veth pair, with a
 * token-bucket filter (`tc … tbf`) limiting what this side sends into it. A daemon started in
 * the namespace (harness `netns`) reaches a master listening on `hostIp` over that link, as an
 * agent on a web server behind a slow line would. Needs root (CAP_NET_ADMIN) and iproute2.
 */
import { execFileSync } from 'node:child_process';

export interface SlowLink {
  /** The namespace to run the far side in. */
  ns: string;
  /** This side's address on the link (listen here). */
  hostIp: string;
  /** The namespace's address. */
  nsIp: string;
  /** Takes the link down: packets are dropped, no connection is closed (a cable pulled). */
  cut(): void;
  /** Brings it back. */
  heal(): void;
  /** Removes the namespace and with it both ends of the link. */
  close(): void;
}

const ip = (...args: string[]) => execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });

/**
 * Makes the link: `rateMbit` from this side to the namespace (the other way is not limited).
 * Returns the reason as a string when this machine cannot (not root, no iproute2, no netns).
 */
export function slowLink(rateMbit: number): SlowLink | string {
  const id = `spk${process.pid % 100_000}`;
  const octet = (process.pid % 250) + 1;
  const host = `${id}h`;
  const far = `${id}n`;
  const hostIp = `10.213.${octet}.1`;
  const nsIp = `10.213.${octet}.2`;
  try {
    ip('netns', 'del', id); // left by a run of this pid that was killed
  } catch {
    // none: the usual case
  }
  try {
    ip('netns', 'add', id);
  } catch (e) {
    return `cannot make a network namespace (root and iproute2 needed): ${((e as { stderr?: Buffer }).stderr ?? '').toString().trim() || (e as Error).message}`;
  }
  const close = () => {
    try {
      ip('netns', 'del', id); // deletes the namespace's end of the veth, and with it this end
    } catch {
      // already gone
    }
  };
  try {
    ip('link', 'add', host, 'type', 'veth', 'peer', 'name', far);
    ip('link', 'set', far, 'netns', id);
    ip('addr', 'add', `${hostIp}/24`, 'dev', host);
    ip('link', 'set', host, 'up');
    ip('-n', id, 'addr', 'add', `${nsIp}/24`, 'dev', far);
    ip('-n', id, 'link', 'set', far, 'up');
    ip('-n', id, 'link', 'set', 'lo', 'up');
    execFileSync('tc', ['qdisc', 'add', 'dev', host, 'root', 'tbf', 'rate', `${rateMbit}mbit`, 'burst', '32kbit', 'latency', '2000ms'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
  } catch (e) {
    close();
    return `cannot set up the link: ${((e as { stderr?: Buffer }).stderr ?? '').toString().trim() || (e as Error).message}`;
  }
  return { ns: id, hostIp, nsIp, close, cut: () => ip('link', 'set', host, 'down'), heal: () => ip('link', 'set', host, 'up') };
}
