// Why a listener could not bind, in words an operator acts on (the config error names the
// file, line and key; this says what is wrong with the address).

export function describeListenError(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  switch (err.code) {
    case 'EADDRINUSE':
      return 'the address is already in use (EADDRINUSE)';
    case 'EACCES':
      return 'permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)';
    case 'EADDRNOTAVAIL':
      return 'no such local address on this machine (EADDRNOTAVAIL)';
    default:
      return err.code ?? err.message;
  }
}
