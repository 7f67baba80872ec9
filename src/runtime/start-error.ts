// A start that cannot go on (a port taken, a spool that will not open): its message names the
// config file, line and key. Its own module so the CLI can recognise it without loading the daemon.
export class StartError extends Error {}
