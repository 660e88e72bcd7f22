import type { Policy } from './schema.js'

/**
 * What may change on a live sandbox (OpenShell's `validate_static_fields_unchanged`).
 *
 * `filesystem_policy`, `landlock` and `process` are applied when the sandbox starts (mounts, the
 * agent's identity), so a new revision may not change them: otherwise `policy get` would show a
 * policy that is not the one in force. The filesystem may only grow (added paths take effect on the
 * next start); `network_policies` and `network_middlewares` are free (hot reload).
 *
 * Returns OpenShell's own error text when the change is refused, undefined when it is allowed.
 */
export function checkLiveChange(current: Policy, next: Policy): string | undefined {
  const fs = checkFilesystemAdditive(current.filesystem_policy, next.filesystem_policy)
  if (fs) return fs
  if (!sameLandlock(current.landlock, next.landlock)) {
    return 'landlock policy cannot be changed on a live sandbox (applied at startup)'
  }
  // Omitting `process` when the running sandbox has one is a change too (OpenShell #3138): the
  // sections are compared as present/absent, then field by field.
  if (!sameProcess(current.process, next.process)) {
    return 'process policy cannot be changed on a live sandbox (applied at startup)'
  }
  return undefined
}

type Fs = Policy['filesystem_policy']

function checkFilesystemAdditive(base: Fs, next: Fs): string | undefined {
  if (base === undefined) return undefined // nothing recorded at start: any filesystem section is an enrichment
  if (next === undefined) return 'filesystem policy cannot be removed on a live sandbox'
  if ((base.include_workdir ?? false) !== (next.include_workdir ?? false)) {
    return 'filesystem include_workdir cannot be changed on a live sandbox'
  }
  const ro = new Set(next.read_only ?? [])
  for (const path of base.read_only ?? []) {
    if (!ro.has(path)) return `filesystem read_only path '${path}' cannot be removed on a live sandbox`
  }
  const rw = new Set(next.read_write ?? [])
  for (const path of base.read_write ?? []) {
    if (!rw.has(path)) return `filesystem read_write path '${path}' cannot be removed on a live sandbox`
  }
  return undefined
}

// An omitted field and an empty string are the same value in OpenShell (proto3 strings); an omitted
// section and a present one are not.
function sameLandlock(a: Policy['landlock'], b: Policy['landlock']): boolean {
  if (a === undefined || b === undefined) return a === b
  return (a.compatibility ?? '') === (b.compatibility ?? '')
}

function sameProcess(a: Policy['process'], b: Policy['process']): boolean {
  if (a === undefined || b === undefined) return a === b
  return (a.run_as_user ?? '') === (b.run_as_user ?? '') && (a.run_as_group ?? '') === (b.run_as_group ?? '')
}
