/**
 * The address watcher (src/transport/userspace/addresses.ts) against a fake
 * interface source: addresses appear, disappear and come back; 'auto'
 * (every non-internal address of the family) vs a fixed list.
 */
import { describe, it, expect, vi, afterEach } from 'vitest';
import type os from 'node:os';
import {
  AddressTracker,
  InterfaceMonitor,
  selectAddresses,
  watchAddresses,
  plainAddress,
  type Interfaces,
} from '../../src/transport/userspace/addresses.js';

function v4(address: string, internal = false, prefix = 24): os.NetworkInterfaceInfo {
  return { address, netmask: '255.255.255.0', family: 'IPv4', mac: '00:00:00:00:00:00', internal, cidr: `${address}/${prefix}` };
}
function v6(address: string, internal = false): os.NetworkInterfaceInfo {
  return { address, netmask: 'ffff:ffff:ffff:ffff::', family: 'IPv6', mac: '00:00:00:00:00:00', internal, cidr: `${address}/64`, scopeid: 0 };
}

/** A host whose interfaces the test edits. */
function fakeHost() {
  const ifaces: Record<string, os.NetworkInterfaceInfo[]> = {
    lo: [v4('127.0.0.1', true, 8), v6('::1', true)],
    eth0: [v4('192.0.2.10'), v6('2001:db8::10'), v6('fe80::10')],
  };
  let reads = 0;
  const source = (): Interfaces => {
    reads++;
    return Object.fromEntries(Object.entries(ifaces).map(([k, v]) => [k, [...v]]));
  };
  return { ifaces, source, reads: () => reads };
}

function recorder() {
  const log: string[] = [];
  return { log, changes: { added: (a: string) => log.push(`+${a}`), removed: (a: string) => log.push(`-${a}`) } };
}

describe('selectAddresses', () => {
  it("'auto': non-internal addresses of the family, link-local only when asked", () => {
    const h = fakeHost();
    h.ifaces.wlan0 = [v4('198.51.100.7'), v4('169.254.3.3')];
    const snap = h.source();
    expect(selectAddresses(snap, { family: 4 })).toEqual(['192.0.2.10', '198.51.100.7']);
    expect(selectAddresses(snap, { family: 4, linkLocal: true })).toEqual(['192.0.2.10', '198.51.100.7', '169.254.3.3']);
    expect(selectAddresses(snap, { family: 6 })).toEqual(['2001:db8::10']);
    expect(selectAddresses(snap, { family: 6, linkLocal: true })).toEqual(['2001:db8::10', 'fe80::10']);
    expect(selectAddresses(snap, { family: 4, exclude: ['192.0.2.10'] })).toEqual(['198.51.100.7']);
  });

  it("'auto' on a loopback-only host finds nothing", () => {
    const snap: Interfaces = { lo: [v4('127.0.0.1', true, 8), v6('::1', true)] };
    expect(selectAddresses(snap, { family: 4 })).toEqual([]);
    expect(selectAddresses(snap, { family: 6 })).toEqual([]);
  });

  it('a fixed list: the listed addresses that are there, loopback prefixes included', () => {
    const snap = fakeHost().source();
    expect(selectAddresses(snap, { family: 4, only: ['127.0.0.1', '127.0.0.2', '192.0.2.10', '192.0.2.11', '10.9.9.9'] })).toEqual(['127.0.0.1', '127.0.0.2', '192.0.2.10']);
  });

  it('IPv4-mapped and zoned addresses are compared plain', () => {
    expect(plainAddress('::ffff:192.0.2.1')).toBe('192.0.2.1');
    expect(plainAddress('fe80::1%eth0')).toBe('fe80::1');
  });
});

describe('AddressTracker', () => {
  it("'auto': appear, disappear, come back", () => {
    const h = fakeHost();
    const r = recorder();
    const t = new AddressTracker({ family: 4 }, r.changes, selectAddresses(h.source(), { family: 4 }));
    expect(t.current()).toEqual(['192.0.2.10']);
    t.update(h.source());
    expect(r.log).toEqual([]); // nothing changed

    h.ifaces.wlan0 = [v4('198.51.100.7')];
    t.update(h.source());
    expect(r.log).toEqual(['+198.51.100.7']);

    h.ifaces.eth0 = [];
    t.update(h.source());
    expect(r.log).toEqual(['+198.51.100.7', '-192.0.2.10']);

    h.ifaces.eth0 = [v4('192.0.2.10')];
    t.update(h.source());
    expect(r.log).toEqual(['+198.51.100.7', '-192.0.2.10', '+192.0.2.10']);
    t.update(h.source());
    expect(r.log).toHaveLength(3);
    expect(t.current().sort()).toEqual(['192.0.2.10', '198.51.100.7']);
  });

  it("'auto' ignores other families, internal and link-local addresses as they come", () => {
    const h = fakeHost();
    const r = recorder();
    const t = new AddressTracker({ family: 4 }, r.changes, ['192.0.2.10']);
    h.ifaces.eth1 = [v6('2001:db8::99'), v4('169.254.1.1'), v4('127.0.0.5', true)];
    t.update(h.source());
    expect(r.log).toEqual([]);
  });

  it('a fixed list: only its addresses; one that comes back is added again', () => {
    const h = fakeHost();
    h.ifaces.wlan0 = [v4('198.51.100.7')];
    const r = recorder();
    const list = ['192.0.2.10', '198.51.100.7'];
    const t = new AddressTracker({ family: 4, only: list }, r.changes, list, h.source());
    h.ifaces.eth1 = [v4('203.0.113.1')]; // not in the list: never added
    t.update(h.source());
    expect(r.log).toEqual([]);

    delete h.ifaces.wlan0;
    t.update(h.source());
    expect(r.log).toEqual(['-198.51.100.7']);
    t.update(h.source());
    expect(r.log).toEqual(['-198.51.100.7']);

    h.ifaces.wlan0 = [v4('198.51.100.7')];
    t.update(h.source());
    expect(r.log).toEqual(['-198.51.100.7', '+198.51.100.7']);
  });

  it('a fixed list: an address absent at the start is added when it appears', () => {
    const h = fakeHost();
    const r = recorder();
    const list = ['192.0.2.10', '198.51.100.7'];
    const t = new AddressTracker({ family: 4, only: list }, r.changes, list, h.source());
    expect(t.current()).toEqual(['192.0.2.10']);
    t.update(h.source());
    expect(r.log).toEqual([]);
    h.ifaces.wlan0 = [v4('198.51.100.7')];
    t.update(h.source());
    expect(r.log).toEqual(['+198.51.100.7']);
  });

  it('a fixed list: an address no snapshot ever showed is never taken away (an empty snapshot ends nothing)', () => {
    const r = recorder();
    const list = ['127.0.0.1', '127.0.0.2'];
    const t = new AddressTracker({ family: 4, only: list }, r.changes, list);
    t.update({});
    expect(r.log).toEqual([]);
    expect(t.current()).toEqual(list);
    // Once seen, it is followed.
    t.update({ lo: [v4('127.0.0.1', true, 8)] });
    t.update({});
    expect(r.log.sort()).toEqual(['-127.0.0.1', '-127.0.0.2']);
  });
});

describe('InterfaceMonitor + watchAddresses', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('polls at its interval only while someone watches; stop unsubscribes', () => {
    vi.useFakeTimers();
    const h = fakeHost();
    const monitor = new InterfaceMonitor(h.source, 1000);
    const r = recorder();
    const tracker = new AddressTracker({ family: 4 }, r.changes, ['192.0.2.10']);
    const stop = watchAddresses(monitor, tracker);
    expect(monitor.subscribers).toBe(1);

    h.ifaces.wlan0 = [v4('198.51.100.7')];
    vi.advanceTimersByTime(999);
    expect(r.log).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(r.log).toEqual(['+198.51.100.7']);

    delete h.ifaces.wlan0;
    vi.advanceTimersByTime(1000);
    expect(r.log).toEqual(['+198.51.100.7', '-198.51.100.7']);

    stop();
    stop(); // twice is fine
    expect(monitor.subscribers).toBe(0);
    const reads = h.reads();
    h.ifaces.wlan0 = [v4('198.51.100.7')];
    vi.advanceTimersByTime(5000);
    expect(h.reads()).toBe(reads); // no timer left
    expect(r.log).toHaveLength(2);
  });

  it('one read per interval however many connections watch; a throwing source or handler stops nothing', () => {
    vi.useFakeTimers();
    const h = fakeHost();
    let fail = false;
    const monitor = new InterfaceMonitor(() => {
      if (fail) throw new Error('EMFILE');
      return h.source();
    }, 1000);
    const a = recorder();
    const b = recorder();
    const stopA = watchAddresses(monitor, new AddressTracker({ family: 4 }, { added: () => { throw new Error('boom'); }, removed: () => {} }, ['192.0.2.10']));
    const stopB = watchAddresses(monitor, new AddressTracker({ family: 4 }, b.changes, ['192.0.2.10']));
    h.ifaces.wlan0 = [v4('198.51.100.7')];
    const before = h.reads();
    vi.advanceTimersByTime(1000);
    expect(h.reads() - before).toBe(1);
    expect(b.log).toEqual(['+198.51.100.7']);
    fail = true;
    vi.advanceTimersByTime(1000); // the last snapshot stands: no change
    expect(b.log).toEqual(['+198.51.100.7']);
    fail = false;
    delete h.ifaces.wlan0;
    vi.advanceTimersByTime(1000);
    expect(b.log).toEqual(['+198.51.100.7', '-198.51.100.7']);
    expect(a.log).toEqual([]);
    stopA();
    stopB();
  });
});
