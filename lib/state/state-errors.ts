/**
 * A file in the state directory (a network's snapshot, state.json) that cannot be read, is
 * corrupt, or is not in the layout this program writes. A module of its own: the snapshots and
 * the store both throw it, and the CLI maps it to one exit code without depending on either.
 */
export class StateFileError extends Error {
  override name = 'StateFileError'
}
