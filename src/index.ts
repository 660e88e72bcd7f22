/**
 * podshell as a library: the same runtime the CLI uses, as values (no process-global state).
 *
 *   import { Podman, SandboxRuntime, defaultDeps, dataDir } from 'podshell'
 *   const podman = await Podman.detect()
 *   const rt = new SandboxRuntime({ podman, dataDir: dataDir(), env: process.env, deps: defaultDeps(dataDir(), process.env), say: console.error, signals: process })
 *   const { exitCode } = await rt.create({ command: ['make', 'test'], workdir: process.cwd(), mounts: [], env: {}, labels: {}, providers: [], detach: false, keep: false })
 *
 * `create` applies podshell's security rules itself (configuration defaults, sensitive paths,
 * `.ai-read-deny` masks, read-only git dirs and agent settings in read-write trees, the enterprise
 * file): the library refuses what the CLI refuses. `signals` is optional: without it the runtime
 * handles no signal (it never installs process handlers of its own).
 */
export { PodshellError, isPodshellError } from './errors.js'
export { Podman, type RuntimeChoice, type PodmanResult } from './podman/podman.js'
export { SandboxRuntime, type SandboxInfo, type Phase, type SandboxDeps } from './sandbox/runtime.js'
export { defaultDeps, DEFAULT_SECCOMP } from './sandbox/deps.js'
export type { CreateOptions, MountSpec, MountMode, SessionType } from './sandbox/types.js'
export { dataDir, configDir, cacheDir, type Env } from './config/paths.js'
// The policy API as src/policy/index.ts defines it (one list of what is public).
export * from './policy/index.js'
export { renderTemplate } from './policy/templates.js'
export { SpecSchema, parseSpec, specToCreateOptions, prepareSpecLaunch, secureCreateOptions, type Spec } from './sandbox/spec.js'
export type { SignalSource } from './podman/interactive.js'
export type { LoadOptions } from './config/enterprise.js'
export { GatewayClient } from './gateway/client.js'
export { PROVIDER_TYPES, providerHosts } from './credentials/types.js'
