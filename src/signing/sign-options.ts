// What the DKIM worker hands mailauth for one signature. Its own module so a test can sign with
// exactly these options (the worker module runs as a thread and cannot be imported).
//
// signTime is always given: without it mailauth writes t= from Date.now() each time it formats
// the header, once for the bytes it signs and once for the header it returns, and Math.round
// makes the two differ whenever a half second passes in between (about one signature in a
// hundred on a busy machine, where RSA signing takes ten milliseconds and more): the header then
// carries a t= that was not signed, and receivers see "bad signature".

/** One signing job, as the pool in dkim.ts posts it to a worker. */
export interface SignJob {
  id: number;
  /** The message in memory, or the spool file it was written to (read as a stream, never whole). */
  message?: Uint8Array;
  file?: string;
  /** Header fields smtplb adds on top of the client's message (List-Unsubscribe), signed with it. */
  prefix?: Uint8Array;
  domain: string;
  selector: string;
  privateKey: string;
  algorithm: string;
  /** Field names, colon-separated (mailauth reads only a string). */
  headers?: string;
}

export interface SignDone { id: number; signature?: string; error?: string }

export function signOptions(job: Pick<SignJob, 'domain' | 'selector' | 'privateKey' | 'algorithm' | 'headers'>, now = new Date()) {
  // mailauth reads the keys from `signatureData` (its typings suggest top-level options, which
  // it silently ignores, producing no signature).
  const key = { signingDomain: job.domain, selector: job.selector, privateKey: job.privateKey, algorithm: job.algorithm, canonicalization: 'relaxed/relaxed' };
  return { ...key, signatureData: [key], signTime: now, ...(job.headers ? { headerList: job.headers } : {}) };
}
