import { closeSync, openSync } from 'node:fs'
import { z } from 'zod'
import { isMap, isPair, isScalar, isSeq, parseAllDocuments, type Document, type Node as YamlNode } from 'yaml'
import { readFdBounded } from '../util/fs.js'
import { checkAllowedIpsEntry } from '../rules/ip.js'
import {
  BinarySchema,
  EndpointObject,
  MiddlewareObject,
  NetworkPolicySchema,
  PolicySchema,
  l7MatchShape,
  type L7Rule,
  type Policy,
} from './schema.js'
import { MAX_POLICY_BYTES, MAX_POLICY_DEPTH, MAX_YAML_ALIAS_COUNT, PolicyError, formatKeyPath, printable } from './limits.js'
import { endpointPorts, hasGraphqlFields, isJsonRpcFamily, nonEmpty } from './checks.js'

/** Reading a policy document: YAML parsing, validation against ./schema.ts, problems as `key.path: message` lines with suggestions, and OpenShell's warnings. */

// ---------------------------------------------------------------------------------------------
// Issue formatting
// ---------------------------------------------------------------------------------------------

function levenshtein(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 3) return 99
  const prev = Array.from({ length: b.length + 1 }, (_, i) => i)
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!
    prev[0] = i
    for (let j = 1; j <= b.length; j++) {
      const tmp = prev[j]!
      prev[j] = Math.min(prev[j]! + 1, prev[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1))
      diag = tmp
    }
  }
  return prev[b.length]!
}

/** Keys a strict object at `path` knows, for "did you mean" hints. */
function knownKeysAt(path: readonly PropertyKey[]): string[] {
  const s = path.map(p => (typeof p === 'number' ? '#' : String(p)))
  const shape = (o: { shape: Record<string, unknown> }) => Object.keys(o.shape)
  const n = s.length
  if (n === 0) return shape(PolicySchema as unknown as { shape: Record<string, unknown> })
  if (n === 1) {
    if (s[0] === 'filesystem_policy') return ['include_workdir', 'read_only', 'read_write']
    if (s[0] === 'landlock') return ['compatibility']
    if (s[0] === 'process') return ['run_as_user', 'run_as_group']
  }
  if (s[0] === 'network_policies') {
    if (n === 2) return shape(NetworkPolicySchema)
    if (n === 4 && s[2] === 'endpoints') return shape(EndpointObject)
    if (n === 4 && s[2] === 'binaries') return shape(BinarySchema)
    if (n === 5 && s[4] === 'rules') return []
    if (n === 6 && s[4] === 'rules') return ['allow']
    if ((n === 7 && s[6] === 'allow') || (n === 6 && s[4] === 'deny_rules')) return Object.keys(l7MatchShape)
    if (n === 6 && s[4] === 'graphql_persisted_queries') return ['operation_type', 'operation_name', 'fields']
    if (n === 5 && (s[4] === 'mcp' || s[4] === 'json_rpc' || s[4] === 'credential_binding')) {
      return s[4] === 'mcp'
        ? ['max_body_bytes', 'strict_tool_names', 'allow_all_known_mcp_methods']
        : s[4] === 'json_rpc'
          ? ['max_body_bytes']
          : ['provider']
    }
  }
  if (s[0] === 'network_middlewares') {
    if (n === 2) return shape(MiddlewareObject)
    if (n === 3 && s[2] === 'endpoints') return ['include', 'exclude']
  }
  return []
}

function suggest(key: string, path: readonly PropertyKey[]): string {
  const known = knownKeysAt(path)
  let best: string | undefined
  let bestD = 3
  for (const k of known) {
    const d = levenshtein(key.toLowerCase(), k)
    if (d < bestD) {
      bestD = d
      best = k
    }
  }
  return best ? ` (did you mean "${best}"?)` : ''
}

function typeName(v: unknown): string {
  if (v === null) return 'null'
  if (Array.isArray(v)) return 'a list'
  if (typeof v === 'object') return 'a map'
  if (typeof v === 'string') return 'a string'
  if (typeof v === 'number') return Number.isInteger(v) ? 'an integer' : 'a number'
  if (typeof v === 'boolean') return 'a boolean'
  return typeof v
}

const expectedName: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  int: 'an integer',
  boolean: 'a boolean (true or false)',
  object: 'a map',
  array: 'a list',
  record: 'a map',
}

type AnyIssue = z.core.$ZodIssue

function issueLines(issue: AnyIssue, out: string[]): void {
  const path = issue.path as PropertyKey[]
  switch (issue.code) {
    case 'unrecognized_keys':
      for (const k of issue.keys) out.push(`${formatKeyPath([...path, k])}: unrecognized key${suggest(k, path)}`)
      return
    case 'invalid_type': {
      const exp = expectedName[issue.expected] ?? issue.expected
      if (!('input' in issue) || issue.input === undefined) {
        out.push(`${formatKeyPath(path)}: required (${exp})`)
        return
      }
      out.push(`${formatKeyPath(path)}: expected ${exp}, got ${typeName(issue.input)}`)
      return
    }
    case 'invalid_value': {
      if (!('input' in issue) || issue.input === undefined) {
        out.push(
          `${formatKeyPath(path)}: required; ${issue.values.length === 1 ? issue.message : `one of ${issue.values.map(v => String(v)).join(', ')}`}`,
        )
        return
      }
      const got = 'input' in issue ? ` got ${JSON.stringify(issue.input)?.slice(0, 60)}` : ''
      if (issue.values.length === 1) out.push(`${formatKeyPath(path)}: ${issue.message}${got ? `,${got}` : ''}`)
      else out.push(`${formatKeyPath(path)}: must be one of ${issue.values.map(v => String(v)).join(', ')};${got}`)
      return
    }
    case 'invalid_union': {
      // Report the branch that got furthest: the one whose first problem is not a type mismatch
      // of the value itself (e.g. an unknown key inside `{ any: ... }`).
      const branches = (issue as { errors?: AnyIssue[][] }).errors ?? []
      const best = branches.find(b => b.length > 0 && !(b[0]!.code === 'invalid_type' && b[0]!.path.length === 0))
      if (best) {
        for (const sub of best) issueLines({ ...sub, path: [...path, ...sub.path] } as AnyIssue, out)
        return
      }
      out.push(`${formatKeyPath(path)}: ${issue.message}`)
      return
    }
    default:
      out.push(`${formatKeyPath(path)}: ${issue.message}`)
  }
}

/** Formats zod issues as `key.path: message` lines. */
export function formatPolicyIssues(err: z.ZodError): string[] {
  const out: string[] = []
  for (const i of err.issues) issueLines(i, out)
  return [...new Set(out)]
}

// ---------------------------------------------------------------------------------------------
// Warnings OpenShell itself emits (accepted but suspicious)
// ---------------------------------------------------------------------------------------------

function globSyntaxProblem(p: string): string | undefined {
  let sq = 0
  let br = 0
  for (const c of p) {
    if (c === '[') sq++
    else if (c === ']') {
      if (sq === 0) return `glob pattern '${p}' has unmatched ']'`
      sq--
    } else if (c === '{') br++
    else if (c === '}') {
      if (br === 0) return `glob pattern '${p}' has unmatched '}'`
      br--
    }
  }
  if (sq > 0) return `glob pattern '${p}' has unclosed '['`
  if (br > 0) return `glob pattern '${p}' has unclosed '{'`
  return undefined
}

const REST_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', '*']
const WS_METHODS = ['GET', 'WEBSOCKET_TEXT', '*']

function validationWarnings(p: Policy): string[] {
  const w: string[] = []
  for (const [key, rule] of Object.entries(p.network_policies ?? {})) {
    ;(rule.endpoints ?? []).forEach((ep, i) => {
      const at = (...rest: PropertyKey[]) => formatKeyPath(['network_policies', key, 'endpoints', i, ...rest])
      const proto = ep.protocol
      if (ep.tls === 'terminate' || ep.tls === 'passthrough') {
        // OpenShell's notice (crates/openshell-sandbox l7 validation), word for word.
        w.push(`${at('tls')}: 'tls: ${ep.tls}' is deprecated; TLS termination is now automatic. Use 'tls: skip' to disable.`)
      }
      // A warning, not an error, as in OpenShell (a policy OpenShell loads must load here). The
      // gateway fails closed on it: a `tls: skip` endpoint is never terminated, so L7 rules narrower
      // than full deny its CONNECTs under enforce (src/gateway/policy-engine.ts decideConnect).
      if (ep.tls === 'skip' && proto !== undefined && endpointPorts(ep).includes(443)) {
        w.push(`${at('tls')}: 'tls: skip' with L7 rules on port 443 — L7 inspection cannot work on encrypted traffic`)
      }
      ;(ep.allowed_ips ?? []).forEach((entry, j) => {
        const v = checkAllowedIpsEntry(entry)
        if (v.ok && v.warning) w.push(`${at('allowed_ips', j)}: ${v.warning}`)
      })
      if (nonEmpty(ep.path)) {
        const g = globSyntaxProblem(ep.path)
        if (g) w.push(`${at('path')}: ${g}`)
      }
      if (
        proto !== 'graphql' &&
        proto !== 'websocket' &&
        (ep.persisted_queries !== undefined || ep.graphql_persisted_queries !== undefined || ep.graphql_max_body_bytes !== undefined)
      ) {
        w.push(`${at()}: GraphQL-specific endpoint fields are ignored unless protocol is graphql or websocket`)
      }
      if (!isJsonRpcFamily(proto) && ep.json_rpc?.max_body_bytes) {
        w.push(`${at('json_rpc')}: JSON-RPC-specific endpoint fields are ignored unless protocol is json-rpc or mcp`)
      }
      if (ep.websocket_credential_rewrite && proto !== 'rest' && proto !== 'websocket') {
        w.push(`${at('websocket_credential_rewrite')}: ignored unless protocol is rest or websocket`)
      }
      if (ep.request_body_credential_rewrite && proto !== 'rest') {
        w.push(`${at('request_body_credential_rewrite')}: ignored unless protocol is rest`)
      }
      const methods = proto === 'websocket' ? WS_METHODS : REST_METHODS
      const checkRule = (r: L7Rule, base: PropertyKey[], isAllow: boolean) => {
        if ((proto === 'rest' || proto === 'websocket') && nonEmpty(r.method) && !methods.includes(r.method.toUpperCase())) {
          w.push(`${at(...base, 'method')}: unknown HTTP/WebSocket method '${r.method}'; standard methods: ${methods.join(', ')}`)
        }
        if (nonEmpty(r.path)) {
          const g = globSyntaxProblem(r.path)
          if (g) w.push(`${at(...base, 'path')}: ${g}`)
        }
        for (const [q, m] of Object.entries(r.query ?? {})) {
          for (const s of typeof m === 'string' ? [m] : m.any) {
            const g = globSyntaxProblem(s)
            if (g) w.push(`${at(...base, 'query', q)}: ${g}`)
          }
        }
        if (!isAllow && nonEmpty(r.command) && proto === 'rest') w.push(`${at(...base, 'command')}: command is for SQL protocol, not REST`)
        if (hasGraphqlFields(r) && proto !== 'graphql' && proto !== 'websocket') {
          w.push(`${at(...base)}: GraphQL rule fields are ignored unless protocol is graphql or websocket`)
        }
      }
      ;(ep.rules ?? []).forEach((r, j) => checkRule(r.allow, ['rules', j, 'allow'], true))
      ;(ep.deny_rules ?? []).forEach((r, j) => checkRule(r, ['deny_rules', j], false))
    })
  }
  return w
}

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------

/** Depth of nested objects/arrays, computed without recursion (input may be hostile). */
function maxDepth(root: unknown, limit: number): number {
  let max = 0
  const stack: [unknown, number][] = [[root, 1]]
  while (stack.length > 0) {
    const [v, d] = stack.pop()!
    if (v === null || typeof v !== 'object') continue
    if (d > max) max = d
    if (max > limit) return max
    const children = Array.isArray(v) ? v : Object.values(v as object)
    for (const c of children) if (c !== null && typeof c === 'object') stack.push([c, d + 1])
  }
  return max
}

function structuralSizeProblem(obj: unknown): string | undefined {
  if (maxDepth(obj, MAX_POLICY_DEPTH) > MAX_POLICY_DEPTH) return `(document): nests deeper than ${MAX_POLICY_DEPTH} levels`
  return undefined
}

/**
 * A key with an empty value (`read_only:` with everything under it commented out) is YAML null.
 * OpenShell's YAML reader (serde_yml) reads an empty value as the empty list/map/default, i.e. as
 * if the key were omitted, so null map values are dropped here (a copy; the input is untouched).
 * Middleware `config` is opaque JSON and keeps its nulls; nulls inside lists stay (and are errors).
 */
function withoutNullFields(v: unknown, inConfig = false): unknown {
  if (Array.isArray(v)) return v.map(x => withoutNullFields(x, inConfig))
  if (v === null || typeof v !== 'object') return v
  const out: Record<string, unknown> = {}
  for (const [k, x] of Object.entries(v)) {
    if (x === null && !inConfig) continue
    Object.defineProperty(out, k, {
      value: withoutNullFields(x, inConfig || k === 'config'),
      enumerable: true,
      writable: true,
      configurable: true,
    })
  }
  return out
}

function validateParsed(obj: unknown, source: string, extraWarnings: string[]): { policy: Policy; warnings: string[] } {
  const depth = structuralSizeProblem(obj)
  if (depth) throw new PolicyError(source, [depth])
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) {
    throw new PolicyError(source, [
      `(document): expected a map with "version: 1" at the top, got ${obj === undefined || obj === null ? 'an empty document' : typeName(obj)}`,
    ])
  }
  const r = PolicySchema.safeParse(withoutNullFields(obj), { reportInput: true })
  if (!r.success) throw new PolicyError(source, formatPolicyIssues(r.error))
  return { policy: r.data, warnings: [...extraWarnings, ...validationWarnings(r.data)].map(printable) }
}

/** Key path of the YAML node that contains `offset` (for duplicate-key and similar errors). */
function keyPathAtOffset(doc: Document, offset: number): PropertyKey[] {
  const path: PropertyKey[] = []
  let node: unknown = doc.contents
  for (let guard = 0; guard < 200 && node; guard++) {
    if (isMap(node)) {
      const pair = node.items.find(p => {
        const k = p.key as YamlNode | null
        const v = p.value as YamlNode | null
        const start = k?.range?.[0] ?? v?.range?.[0] ?? Infinity
        const end = v?.range?.[2] ?? k?.range?.[2] ?? -1
        return start <= offset && offset <= end
      })
      if (!pair) break
      const k = pair.key
      path.push(isScalar(k) ? String(k.value) : '?')
      const kr = (k as YamlNode | null)?.range
      if (kr && offset <= kr[1]) break
      node = pair.value
    } else if (isSeq(node)) {
      const idx = node.items.findIndex(it => {
        const r = (it as YamlNode | null)?.range
        return r != null && r[0] <= offset && offset <= r[2]
      })
      if (idx < 0) break
      path.push(idx)
      node = node.items[idx]
    } else if (isPair(node)) {
      node = node.value
    } else break
  }
  return path
}

function yamlIssue(
  doc: Document | undefined,
  e: { code: string; message: string; pos: [number, number]; linePos?: [{ line: number; col: number }, ...unknown[]] },
): string {
  const first = e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')
  const where = e.linePos?.[0] ? ` (line ${e.linePos[0].line}, column ${e.linePos[0].col})` : ''
  if (e.code === 'DUPLICATE_KEY' && doc) {
    const path = keyPathAtOffset(doc, e.pos[0])
    if (path.length > 0) return `${formatKeyPath(path)}: duplicate key${where}`
  }
  if (/call stack/i.test(first)) return `(document): nests too deeply for a policy${where}`
  return `(document): YAML error: ${first}${where}`
}

/**
 * Parses and validates policy YAML. Safety, before any policy semantics: documents over 256 KiB
 * are refused before parsing; duplicate keys are errors (the last one would otherwise silently
 * win); alias expansion is capped; exactly one document is allowed; nesting is bounded.
 */
export function parsePolicyText(text: string, source: string): { policy: Policy; warnings: string[] } {
  const bytes = Buffer.byteLength(text, 'utf8')
  if (bytes > MAX_POLICY_BYTES) {
    throw new PolicyError(source, [`(document): policy is ${bytes} bytes; the maximum is ${MAX_POLICY_BYTES} (256 KiB)`])
  }
  let docs: Document.Parsed[]
  try {
    const parsed = parseAllDocuments(text, { uniqueKeys: true, prettyErrors: true, strict: true })
    docs = Array.isArray(parsed) ? parsed : []
  } catch (e) {
    throw new PolicyError(source, [`(document): YAML cannot be parsed: ${(e as Error).message.split('\n')[0]}`], { cause: e })
  }
  if (docs.length === 0) throw new PolicyError(source, ['(document): the policy is empty; it needs at least "version: 1"'])
  if (docs.length > 1) {
    throw new PolicyError(source, [
      `(document): ${docs.length} YAML documents found; a policy file holds exactly one (remove the extra "---" separators)`,
    ])
  }
  const doc = docs[0]!
  if (doc.errors.length > 0) {
    let plain: Document | undefined
    if (doc.errors.some(e => e.code === 'DUPLICATE_KEY')) {
      try {
        plain = (parseAllDocuments(text, { uniqueKeys: false }) as Document.Parsed[])[0]
      } catch {
        plain = undefined
      }
    }
    throw new PolicyError(source, [...new Set(doc.errors.map(e => yamlIssue(plain, e as never)))])
  }
  let obj: unknown
  try {
    obj = doc.toJS({ maxAliasCount: MAX_YAML_ALIAS_COUNT })
  } catch (e) {
    const m = (e as Error).message ?? String(e)
    const reason = /alias/i.test(m)
      ? `YAML aliases expand too much (more than ${MAX_YAML_ALIAS_COUNT} resolved nodes per alias); inline the repeated values`
      : /call stack/i.test(m)
        ? 'nests too deeply for a policy'
        : `YAML cannot be converted: ${m.split('\n')[0]}`
    throw new PolicyError(source, [`(document): ${reason}`], { cause: e })
  }
  const yamlWarnings = doc.warnings.map(x => `(document): YAML warning: ${x.message.split('\n')[0]}`)
  return validateParsed(obj, source, yamlWarnings)
}

/** Validates an already-parsed policy object (from JSON, or built in code). */
export function validatePolicy(obj: unknown, source: string): { policy: Policy; warnings: string[] } {
  const depth = structuralSizeProblem(obj)
  if (depth) throw new PolicyError(source, [depth])
  let size: number
  try {
    size = Buffer.byteLength(JSON.stringify(obj) ?? '')
  } catch (e) {
    throw new PolicyError(source, [`(document): cannot be serialised: ${(e as Error).message}`], { cause: e })
  }
  if (size > MAX_POLICY_BYTES) {
    throw new PolicyError(source, [`(document): policy is ${size} bytes serialised; the maximum is ${MAX_POLICY_BYTES} (256 KiB)`])
  }
  return validateParsed(obj, source, [])
}

/**
 * Reads and validates a policy file. Fails closed: a missing or unreadable policy is an error,
 * never "no policy" (which a caller could mistake for "no restrictions"). Reads at most 256 KiB + 1
 * bytes, so /dev/zero or a huge file cannot exhaust memory; pipes (`<(...)`) work.
 */
export function loadPolicyFile(path: string): { policy: Policy; warnings: string[] } {
  let fd: number
  try {
    fd = openSync(path, 'r')
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    if (code === 'ENOENT') {
      const m = `policy file not found: ${path}`
      throw new PolicyError(path, [`(document): ${m}`], {
        summary: m,
        code: 'POLICY_NOT_FOUND',
        hint: 'check the path; podshell never falls back to another policy',
        cause: e,
      })
    }
    const m = `cannot open policy file ${path} (${code ?? 'error'})`
    throw new PolicyError(path, [`(document): ${m}`], {
      summary: m,
      code: 'POLICY_UNREADABLE',
      hint: 'check the file permissions',
      cause: e,
    })
  }
  let data: Buffer | undefined
  try {
    data = readFdBounded(fd, MAX_POLICY_BYTES)
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    const what = code === 'EISDIR' ? `${path} is a directory, not a policy file` : `cannot read policy file ${path} (${code ?? 'error'})`
    throw new PolicyError(path, [`(document): ${what}`], {
      summary: what,
      code: 'POLICY_UNREADABLE',
      hint: 'give the path of a policy YAML file',
      cause: e,
    })
  } finally {
    closeSync(fd)
  }
  if (data === undefined) throw new PolicyError(path, [`(document): policy file is larger than ${MAX_POLICY_BYTES} bytes (256 KiB)`])
  let text: string
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(data)
  } catch (e) {
    throw new PolicyError(path, ['(document): the file is not valid UTF-8'], { cause: e })
  }
  return parsePolicyText(text, path)
}
