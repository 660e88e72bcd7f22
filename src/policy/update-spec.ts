/** `policy update`'s flag specs (`host:port[:access[:protocol[:enforcement[:options]]]]`, `host:port:METHOD:path`), parsed into endpoints and rules with one-line errors naming the flag and the spec. */
import { PodshellError } from '../errors.js'
import type { Endpoint } from './schema.js'

export const invalid = (message: string) => new PodshellError(message, { exitCode: 2, code: 'INVALID_INPUT' })

// ---------------------------------------------------------------------------------------------
// Flag parsing (one-line errors naming the flag and the spec)
// ---------------------------------------------------------------------------------------------

export function parseHost(flag: string, spec: string, raw: string): string {
  const host = raw.trim()
  if (host === '') throw invalid(`${flag} has an empty host segment in '${spec}'`)
  if (/\s/u.test(host)) throw invalid(`${flag} host must not contain whitespace in '${spec}'`)
  if (host.includes('/')) throw invalid(`${flag} host must not contain '/' in '${spec}'`)
  return host
}

export function parsePort(flag: string, spec: string, raw: string): number {
  const port = raw.trim()
  if (port === '') throw invalid(`${flag} has an empty port segment in '${spec}'`)
  if (!/^\+?\d{1,10}$/.test(port)) throw invalid(`${flag} port segment must be a base-10 integer, got '${port}' in '${spec}'`)
  const n = Number(port)
  if (n < 1 || n > 65535) throw invalid(`${flag} port must be in the range 1-65535, got '${n}' in '${spec}'`)
  return n
}

/** `host:port` of `--remove-endpoint`. */
export function parseHostPortSpec(spec: string, flag = '--remove-endpoint'): { host: string; port: number } {
  const parts = spec.split(':')
  if (parts.length !== 2) throw invalid(`${flag} expects host:port, got '${spec}'`)
  return { host: parseHost(flag, spec, parts[0]!), port: parsePort(flag, spec, parts[1]!) }
}

/** `host:port:METHOD:path_glob` of `--add-allow` / `--add-deny`. */
export function parseRuleSpec(flag: string, spec: string): { host: string; port: number; method: string; path: string } {
  const parts = spec.split(':')
  if (parts.length !== 4) throw invalid(`${flag} expects host:port:METHOD:path_glob, got '${spec}'`)
  const host = parseHost(flag, spec, parts[0]!)
  const port = parsePort(flag, spec, parts[1]!)
  const method = parts[2]!.trim()
  if (method === '') throw invalid(`${flag} has an empty METHOD segment in '${spec}'`)
  if (/\s/u.test(method)) throw invalid(`${flag} METHOD must not contain whitespace in '${spec}'`)
  const path = parts[3]!.trim()
  if (path === '') throw invalid(`${flag} has an empty path segment in '${spec}'`)
  if (!path.startsWith('/') && path !== '**' && !path.startsWith('**/')) {
    throw invalid(`${flag} path must start with '/' or be '**', got '${path}' in '${spec}'`)
  }
  return { host, port, method: method.toUpperCase(), path }
}

const ALLOWED_IP = 'allowed-ip='

/** `host:port[:access[:protocol[:enforcement[:options]]]]` of `--add-endpoint`, as an endpoint. */
export function parseEndpointSpec(spec: string): Endpoint {
  const flag = '--add-endpoint'
  const parts = spec.split(':')
  if (parts.length < 2 || parts.length > 6) {
    throw invalid(`${flag} expects host:port[:access[:protocol[:enforcement[:options]]]], got '${spec}'`)
  }
  const host = parseHost(flag, spec, parts[0]!)
  const port = parsePort(flag, spec, parts[1]!)
  const access = (parts[2] ?? '').trim()
  const protocol = (parts[3] ?? '').trim()
  const enforcement = (parts[4] ?? '').trim()
  const options = (parts[5] ?? '').trim()
  if (parts.length === 3 && access === '') {
    throw invalid(`${flag} has an empty access segment in '${spec}'; omit it entirely if you do not need access or protocol fields`)
  }
  if (parts.length === 6 && options === '') {
    throw invalid(`${flag} has an empty options segment in '${spec}'; omit it entirely if you do not need endpoint options`)
  }
  if (enforcement !== '' && protocol === '') throw invalid(`${flag} cannot set enforcement without protocol in '${spec}'`)
  if (access !== '' && !['read-only', 'read-write', 'full'].includes(access)) {
    throw invalid(`${flag} access segment must be one of read-only, read-write, or full; got '${access}' in '${spec}'`)
  }
  if (protocol !== '' && !['tcp', 'rest', 'websocket', 'sql'].includes(protocol)) {
    throw invalid(`${flag} protocol segment must be 'tcp', 'rest', 'websocket', or 'sql'; got '${protocol}' in '${spec}'`)
  }
  if (protocol === 'tcp' && (access !== '' || enforcement !== '')) {
    throw invalid(`${flag} protocol 'tcp' does not support access or enforcement in '${spec}'`)
  }
  if (enforcement !== '' && !['enforce', 'audit'].includes(enforcement)) {
    throw invalid(`${flag} enforcement segment must be 'enforce' or 'audit'; got '${enforcement}' in '${spec}'`)
  }
  const ep: Endpoint = { host, port }
  if (access !== '') ep.access = access as Endpoint['access']
  if (protocol !== '') ep.protocol = protocol as Endpoint['protocol']
  if (enforcement !== '') ep.enforcement = enforcement as Endpoint['enforcement']
  if (options !== '') {
    for (const raw of options.split(',')) {
      const option = raw.trim()
      if (option === '') throw invalid(`${flag} options segment must not contain empty options in '${spec}'`)
      if (option === 'allow-uninspected-credentials') ep.allow_uninspected_credentials = true
      else if (option === 'websocket-credential-rewrite') {
        if (protocol !== 'rest' && protocol !== 'websocket') {
          throw invalid(`websocket-credential-rewrite endpoint option requires ${flag} protocol segment to be 'rest' or 'websocket'; got '${protocol || '<empty>'}' in '${spec}'`)
        }
        ep.websocket_credential_rewrite = true
      } else if (option === 'request-body-credential-rewrite') {
        if (protocol !== 'rest') {
          throw invalid(`request-body-credential-rewrite endpoint option requires ${flag} protocol segment to be 'rest'; got '${protocol || '<empty>'}' in '${spec}'`)
        }
        ep.request_body_credential_rewrite = true
      } else if (option.startsWith(ALLOWED_IP)) {
        const ip = option.slice(ALLOWED_IP.length).trim()
        if (ip === '') throw invalid(`${flag} allowed-ip option must include a CIDR or IP value in '${spec}'`)
        if (/\s/u.test(ip)) throw invalid(`${flag} allowed-ip option must not contain whitespace in '${spec}'`)
        ep.allowed_ips = [...new Set([...(ep.allowed_ips ?? []), ip])]
      } else {
        throw invalid(
          `${flag} options segment supports only 'allow-uninspected-credentials', 'websocket-credential-rewrite', 'request-body-credential-rewrite', and 'allowed-ip=<CIDR-or-IP>'; got '${option}' in '${spec}'`,
        )
      }
    }
  }
  return ep
}

/** OpenShell's generated rule name: `allow_<host with . and - as _>_<port>`, other characters dropped. */
export function generatedRuleName(host: string, port: number): string {
  const sanitized = [...host.replace(/[.-]/g, '_')].filter(c => /[\p{L}\p{N}_]/u.test(c)).join('')
  return `allow_${sanitized}_${port}`
}

