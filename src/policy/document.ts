import { createHash } from 'node:crypto'
import { z } from 'zod'
import { stringify } from 'yaml'
import { PolicySchema, type Policy } from './schema.js'
import { formatKeyPath, printable } from './limits.js'
import { canonicalJson } from '../util/canonical-json.js'

/** A validated policy as a document: OpenShell's restrictive default, canonical YAML, the hash, what podshell does not enforce, and the JSON Schema. */

// ---------------------------------------------------------------------------------------------
// Defaults, serialisation, hashing
// ---------------------------------------------------------------------------------------------

/**
 * OpenShell's restrictive default (lib.rs `restrictive_default_policy`): standard system paths,
 * Landlock best effort, no process section, and no network policies, i.e. all egress denied.
 */
export function restrictiveDefaultPolicy(): Policy {
  return {
    version: 1,
    filesystem_policy: {
      include_workdir: true,
      read_only: ['/usr', '/lib', '/proc', '/dev/urandom', '/app', '/etc', '/var/log'],
      read_write: ['/tmp', '/dev/null'],
    },
    landlock: { compatibility: 'best_effort' },
  }
}

function sortedRecord<T>(r: Record<string, T> | undefined): Record<string, T> | undefined {
  if (r === undefined) return undefined
  const out: Record<string, T> = {}
  for (const k of Object.keys(r).sort()) out[k] = r[k]!
  return out
}

/**
 * Canonical YAML: top-level sections and fields in schema order, network_policies and
 * network_middlewares sorted by key (as OpenShell prints them), no YAML anchors.
 */
export function policyToYaml(p: Policy): string {
  const doc: Record<string, unknown> = { version: p.version }
  if (p.filesystem_policy !== undefined) doc.filesystem_policy = p.filesystem_policy
  if (p.landlock !== undefined) doc.landlock = p.landlock
  if (p.process !== undefined) doc.process = p.process
  if (p.network_policies !== undefined) doc.network_policies = sortedRecord(p.network_policies)
  if (p.network_middlewares !== undefined) doc.network_middlewares = sortedRecord(p.network_middlewares)
  return stringify(doc, { aliasDuplicateObjects: false, lineWidth: 0 })
}

/** sha256 (hex) of the policy's canonical JSON (keys sorted at every level). */
export function policyHash(p: Policy): string {
  return createHash('sha256').update(canonicalJson(p)).digest('hex')
}

// ---------------------------------------------------------------------------------------------
// What podshell accepts but does not enforce
// ---------------------------------------------------------------------------------------------

/**
 * One line per field podshell accepts (for OpenShell compatibility) but does not enforce, so that
 * nothing is silently weaker than the document says. The gateway enforces: hosts and ports
 * (CONNECT and plain-HTTP proxy requests), allowed_ips, and REST/WebSocket-upgrade method/path/query
 * rules on plain HTTP and on HTTPS, which it terminates for L7 endpoints that are not `tls: skip`
 * (src/gateway/policy-engine.ts, src/gateway/tls-terminate.ts). filesystem_policy is mapped onto mounts
 * (src/sandbox/fs-policy.ts); what the mapping cannot express is warned here. Keep in step.
 */
export function unenforcedWarnings(p: Policy): string[] {
  const w: string[] = []
  if (p.filesystem_policy !== undefined) {
    w.push(
      'filesystem_policy: enforced with mounts, not Landlock — include_workdir sets the workdir mount read-write or read-only, read_write/read_only paths ' +
        'inside mounted directories are bound writable/read-only, other read_write paths get a writable tmpfs; paths the policy does not list stay ' +
        'readable (the image is read-only, not hidden), and the agent can always write its home and /tmp',
    )
  }
  if (p.landlock !== undefined) {
    w.push('landlock: not enforced — podshell uses container mounts, not Landlock, for filesystem access; compatibility has no effect')
  }
  if (p.process?.run_as_user || p.process?.run_as_group) {
    w.push(
      'process: not enforced — the agent runs as your own uid/gid (rootless Podman, --userns=keep-id), whatever run_as_user/run_as_group say',
    )
  }
  for (const key of Object.keys(p.network_middlewares ?? {})) {
    w.push(
      `${formatKeyPath(['network_middlewares', key])}: not enforced — podshell runs no supervisor middleware; requests pass without this stage`,
    )
  }
  for (const [key, rule] of Object.entries(p.network_policies ?? {})) {
    const bin = (rule.binaries ?? []).length > 0
    w.push(
      bin
        ? `${formatKeyPath(['network_policies', key, 'binaries'])}: not enforced — any process in the sandbox may use these endpoints`
        : `${formatKeyPath(['network_policies', key, 'binaries'])}: none listed — OpenShell lets no process use these endpoints; podshell does not identify processes and lets any process use them`,
    )
    ;(rule.endpoints ?? []).forEach((ep, i) => {
      const at = (...rest: PropertyKey[]) => formatKeyPath(['network_policies', key, 'endpoints', i, ...rest])
      // request_body_credential_rewrite and websocket_credential_rewrite are enforced (issue 12,
      // terminated TLS, 256 KiB buffer).
      for (const f of ['allow_uninspected_credentials'] as const) {
        if (ep[f]) w.push(`${at(f)}: not enforced — the podshell gateway does not rewrite or gate credentials in traffic`)
      }
      // credential_binding is enforced (issue 12: placeholders are substituted on it, refused elsewhere).
      for (const f of ['credential_signing', 'signing_service', 'signing_region'] as const) {
        if (ep[f] !== undefined) w.push(`${at(f)}: not enforced — the podshell gateway does not sign or bind credentials`)
      }
      const proto = ep.protocol
      const enforce = ep.enforcement === 'enforce'
      const narrowed = (ep.rules?.length ?? 0) > 0 || (ep.deny_rules?.length ?? 0) > 0 || (ep.access !== undefined && ep.access !== 'full')
      if (proto === 'websocket') {
        w.push(
          `${at('protocol')}: websocket — podshell checks the upgrade request (GET method/path/query, ws:// and inspected wss://) and does not inspect messages: ` +
            'an upgrade narrower than full is allowed only where WEBSOCKET_TEXT is allowed; after an allowed upgrade every client message passes',
        )
      } else if (proto === 'graphql' || proto === 'mcp' || proto === 'json-rpc' || proto === 'sql') {
        w.push(
          `${at('protocol')}: ${proto} L7 rules are not enforced — podshell's gateway checks REST method/path/query only; ` +
            (enforce
              ? 'with enforcement: enforce, requests it cannot check are denied'
              : 'with enforcement: audit (the default), requests are allowed and logged unchecked'),
        )
      } else if (proto === 'tcp') {
        w.push(
          `${at('protocol')}: tcp — podshell has no transparent TCP capture; only clients that use the proxy (HTTPS_PROXY/CONNECT) reach this endpoint`,
        )
      } else if (proto === 'rest' && narrowed && ep.tls === 'skip') {
        w.push(
          `${at()}: REST rules narrower than full with tls: skip — HTTPS to this endpoint is not inspected: ` +
            (enforce
              ? 'its CONNECTs are denied (method/path are inside TLS); drop tls: skip to have each request checked'
              : 'with enforcement: audit (the default), HTTPS requests are allowed and logged without a method/path check'),
        )
      }
    })
  }
  return w.map(printable)
}

/** JSON Schema (draft 2020-12) of the policy document, for editors. */
export function policyJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(PolicySchema, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>
  return {
    ...schema,
    $id: 'urn:podshell:schema:openshell-policy:v1',
    title: 'OpenShell sandbox policy (v1), as accepted by podshell',
  }
}
