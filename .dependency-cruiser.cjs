// The architecture's rules, checked by `npm test` (scripts/test.mjs runs
// `depcruise lib handlers --config .dependency-cruiser.cjs`; any violation fails the run).
//
// lib/ is in folders, and imports point one way, down this list:
//   handlers/ → lib/commands/ → lib/run/ → lib/config/ → lib/consul/, lib/openstack/, lib/fence/, lib/decide/, lib/state/ → lib/base/
// The five middle folders may import one another, except that lib/decide/ stays pure.
// Type-only imports count like any other (`tsPreCompilationDeps`): a cycle of types is still a cycle to read.

/** Node's modules that do I/O: what lib/decide/ and lib/base/ never import. */
const IO_MODULES = [
  '^node:(fs|fs/promises|child_process|net|http|https|http2|tls|dgram|dns|os|worker_threads|cluster|readline|vm)$',
  '^(fs|fs/promises|child_process|net|http|https|http2|tls|dgram|dns|os|worker_threads|cluster|readline|vm)$',
  '^node-fetch$',
]

module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      comment:
        'No import cycles, type-only ones included: a module can be read knowing only what is below it. ' +
        'Break a cycle by moving what both sides share down (a type into the module that owns it, a port into its own module).',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    {
      name: 'decide-is-pure',
      comment:
        'lib/decide/ decides from values it is given: no file, process, network or clock access of its own, ' +
        'and no import of a lib/ folder that does I/O (only lib/base/ and itself).',
      severity: 'error',
      from: { path: '^lib/decide/' },
      to: { path: [...IO_MODULES, '^lib/(?!decide/|base/)'] },
    },
    {
      name: 'base-is-the-bottom',
      comment: 'lib/base/ holds the shared basics: it imports nothing else from lib/, and nothing that does I/O (lib/decide/ imports it).',
      severity: 'error',
      from: { path: '^lib/base/' },
      to: { path: [...IO_MODULES, '^lib/(?!base/)', '^handlers/'] },
    },
    {
      name: 'layers-down',
      comment: 'consul/, openstack/, fence/, decide/ and state/ do not import the config, the run, the commands or the handlers.',
      severity: 'error',
      from: { path: '^lib/(consul|openstack|fence|decide|state)/' },
      to: { path: '^(lib/(run|commands)/|handlers/)' },
    },
    {
      name: 'layers-down-to-config',
      comment:
        'Nor the config: it stacks the sections that these folders own (consul/sender.ts the lock, openstack/masakari-config.ts ' +
        'the masakari section, fence/fence-config.ts the fencing section, decide/guards.ts the guards…); they take the values they need, not the Config.',
      severity: 'error',
      from: { path: '^lib/(consul|openstack|fence|decide|state)/' },
      to: { path: '^lib/config/' },
    },
    {
      name: 'layers-down-config',
      comment: 'lib/config/ is read by the run: it imports neither the run, the commands nor the handlers.',
      severity: 'error',
      from: { path: '^lib/config/' },
      to: { path: '^(lib/(run|commands)/|handlers/)' },
    },
    {
      name: 'layers-down-run',
      comment: 'lib/run/ is what the commands and handlers compose: it imports neither of them.',
      severity: 'error',
      from: { path: '^lib/run/' },
      to: { path: '^(lib/commands/|handlers/)' },
    },
    {
      name: 'layers-down-commands',
      comment: 'lib/commands/ is called by the handlers, never the other way.',
      severity: 'error',
      from: { path: '^lib/commands/' },
      to: { path: '^handlers/' },
    },
    {
      name: 'not-to-unresolvable',
      comment: 'An import that does not resolve is a typo or a missing dependency.',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    // Type-only imports are dependencies too (a cycle of types is still a cycle to read).
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    doNotFollow: { path: 'node_modules' },
    // The bundle's build-time constant and the like are not modules.
    exclude: { path: '^(dist|node_modules)/' },
  },
}
