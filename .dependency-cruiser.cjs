// The dependency rules of issue 23, checked by test/dependencies.test.ts (and `npx depcruise
// src --config .dependency-cruiser.cjs` by hand). Type-only imports count: a cycle of types is
// still two modules that cannot be understood apart.
// The decision modules: routing, pick, eligible, health state, retry, throttle, warm-up,
// classify, MX ordering, the due heap, DSN and 7-bit decisions, the From parser, the outcome
// classifier.
const DECISIONS = '^src/(routing/route|balancing/(pick|eligible)|health/state|scheduler/(retry|throttle|warmup|due-heap)|policy/(classify|identity)|discovery/mx-order|cleanup/(from-header|line-endings)|delivery/dsn-params|outcomes/reply-class)\\.ts$';
// Modules that do I/O (sockets, files, DNS, processes, timers over them).
const IO = '^src/(spool|runtime|listeners|admin|cli|demo|sink|signing/dkim-worker|cluster/(cluster|ipc-client)|delivery/(upstream|deliver|pipelining|delivery-log)|discovery/dns|health/(checks|monitor)|identity/(gather|lookup|monitor|doctor))';

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    { name: 'no-cycles', severity: 'error', comment: 'No import cycle in src.', from: { path: '^src' }, to: { circular: true } },
    {
      name: 'listeners-stay-at-the-edge',
      severity: 'error',
      comment: 'Listeners report through the narrow interfaces they own (listeners/counters.ts); they import no admin, runtime or scheduler.',
      from: { path: '^src/listeners/' },
      to: { path: '^src/(admin|runtime|scheduler)/' },
    },
    {
      name: 'store-does-not-schedule',
      severity: 'error',
      comment: 'The spool stores and reports moves; scheduling and delivery are above it.',
      from: { path: '^src/spool/' },
      to: { path: '^src/(scheduler|delivery|runtime|admin)/' },
    },
    {
      name: 'cluster-knows-no-store-internals',
      severity: 'error',
      comment: 'Shared limits (cluster, primary store) take plain data, not spool rows.',
      from: { path: '^src/cluster/' },
      to: { path: '^src/spool/' },
    },
    {
      name: 'health-checks-need-no-listener',
      severity: 'error',
      comment: 'Health checks and listeners share the PROXY protocol through src/protocol, not each other.',
      from: { path: '^src/(health|balancing)/' },
      to: { path: '^src/(listeners|runtime|admin)/' },
    },
    {
      name: 'decisions-are-pure',
      severity: 'error',
      comment: 'Decision modules are pure functions over plain data: no sockets, files or DNS, and no module that does I/O.',
      from: { path: DECISIONS },
      to: { path: ['^(node:)?(net|fs|fs/promises|dns|dns/promises|tls|http|https|child_process|dgram)$', IO] },
    },
  ],
  options: {
    tsConfig: { fileName: 'tsconfig.json' },
    tsPreCompilationDeps: true,
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(dist|node_modules)' },
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['import', 'require', 'node', 'default', 'types'], extensions: ['.ts', '.js', '.d.ts'] },
    moduleSystems: ['es6'],
  },
};
