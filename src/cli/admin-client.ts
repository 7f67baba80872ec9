// The CLI's way to a running smtplb: its admin API, found from the config file.
import { loadConfig } from '../config/load.js';
import { formatAddress } from '../config/units.js';

/** A mistake in how the command was called, or an answer to report: one message, exit 1. */
export class UsageError extends Error {}

export function configOf(values: { config?: string }): string {
  if (!values.config) throw new UsageError('this command needs -c FILE');
  return values.config;
}

export async function admin(file: string, method: string, urlPath: string, body?: unknown): Promise<unknown> {
  const { config } = loadConfig(file);
  if (!config.admin) throw new UsageError(`${file} has no admin: { listen, token } section`);
  const url = `http://${formatAddress(config.admin.listen).replace('0.0.0.0', '127.0.0.1')}${urlPath}`;
  let res: Response;
  try {
    res = await fetch(url, {
      method,
      headers: { authorization: `Bearer ${config.admin.token ?? ''}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new UsageError(`cannot reach the smtplb admin API at ${url}: ${((e as Error).cause as Error | undefined)?.message ?? (e as Error).message}. Is smtplb running with ${file}?`);
  }
  const data = (await res.json().catch(() => ({}))) as { error?: string };
  if (!res.ok) throw new UsageError(`admin API: ${res.status} ${data.error ?? res.statusText}`);
  return data;
}
