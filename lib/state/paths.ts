/**
 * Files of the state directory, named once: those the quiet run (lib/run/quiet-run.ts) looks at
 * before anything is loaded, for it and for the modules that write them, and the others named
 * beside them. Only node:path here: the modules that write them load zod.
 */
import { join } from 'node:path'

/** The record (lib/state/store.ts). */
export function statePath(stateDir: string): string {
  return join(stateDir, 'state.json')
}

/** One network's snapshot (lib/state/snapshot.ts). */
export function snapshotPath(stateDir: string, network: string): string {
  return join(stateDir, 'snapshots', `${network}.json`)
}

/** The wake note: when a worker must run next; absent when nothing waits (lib/state/status-files.ts). */
export function wakePath(stateDir: string): string {
  return join(stateDir, 'wake')
}

/** Masakari's host list, kept between runs (lib/run/masakari-hosts.ts). */
export function hostListPath(stateDir: string): string {
  return join(stateDir, 'masakari-hosts.json')
}

/** The Keystone token, kept between runs (lib/openstack/token-cache.ts). */
export function tokenPath(stateDir: string): string {
  return join(stateDir, 'token.json')
}

/** The holds this controller's own runs saw, with several controllers (lib/state/own-holds.ts). */
export function ownHoldsPath(stateDir: string): string {
  return join(stateDir, 'holds.json')
}
