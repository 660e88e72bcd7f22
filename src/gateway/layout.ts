import { existsSync, readdirSync, renameSync } from 'node:fs'
import { join } from 'node:path'
import { GATEWAY_VIEW_ENTRIES, gatewaySandboxDir, sandboxDir, sandboxesDir } from '../config/paths.js'
import { mkdirp } from '../util/fs.js'
import { SANDBOX_NAME_RE } from '../util/patterns.js'

/**
 * The data-dir layout the gateway container is made for. Layout 2 mounts only `<data>/gateway`
 * into the gateway (src/config/paths.ts): a gateway that answers without this layout (an older
 * podshell's, which mounted the whole data dir) is replaced by the next command, after the
 * per-sandbox files it reads have been moved into its view.
 */
export const GATEWAY_LAYOUT = 2

/**
 * Moves what the gateway reads and writes per sandbox (policy/, egress/, audit/, providers.json)
 * from `sandboxes/<name>/` (layout 1) into `gateway/sandboxes/<name>/`. rename(2) within one
 * filesystem: a running sandbox's bridge, which bind-mounted the egress DIRECTORY, keeps it (a bind
 * mount follows the directory, not its path), so the new gateway's socket appears where the bridge
 * looks. Idempotent; returns how many entries moved.
 */
export function migrateGatewayView(data: string): number {
  let moved = 0
  let names: string[]
  try {
    names = readdirSync(sandboxesDir(data)).filter(n => SANDBOX_NAME_RE.test(n))
  } catch {
    return 0
  }
  for (const name of names) {
    for (const entry of GATEWAY_VIEW_ENTRIES) {
      const from = join(sandboxDir(data, name), entry)
      const to = join(gatewaySandboxDir(data, name), entry)
      if (!existsSync(from) || existsSync(to)) continue
      mkdirp(gatewaySandboxDir(data, name))
      renameSync(from, to)
      moved++
    }
  }
  return moved
}
