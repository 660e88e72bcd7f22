import { fileURLToPath } from 'node:url'
import { ProviderLock } from '../credentials/lock.js'
import { lockStale } from '../util/lockfile.js'
import type { Env } from '../config/paths.js'
import { sandboxPolicyDir } from '../config/paths.js'
import type { SandboxDeps } from './runtime.js'
import { ensureImages } from '../images/build.js'
import { ensureGateway, retireStaleGateways } from '../gateway/lifecycle.js'
import { GATEWAY_IMAGE } from '../images/names.js'
import { GatewayClient } from '../gateway/client.js'
import { appendLifecycle } from '../gateway/audit.js'
import { parsePolicyText } from '../policy/parse.js'
import { restrictiveDefaultPolicy, unenforcedWarnings } from '../policy/document.js'
import { PolicyStore } from '../policy/store.js'
import { prepareInjection, removeSandboxSecrets, gcOrphanedSecrets } from '../credentials/inject.js'

/** The seccomp profile shipped with podshell (package root/seccomp/default.json). */
export const DEFAULT_SECCOMP = fileURLToPath(new URL('../../seccomp/default.json', import.meta.url))

/** Wires the sandbox lifecycle to the real images, gateway, policy store and credentials. */
export function defaultDeps(dataDir: string, env: Env): SandboxDeps {
  const gateway = new GatewayClient(dataDir)
  return {
    ensureImages: async (podman, which, say) => {
      const built = await ensureImages(podman, { env, which, say })
      if (!built.includes('gateway')) return { gatewayReplaced: false }
      // A running gateway keeps the code of the image it started from: after a rebuild (podshell
      // upgraded) old gateways go, so sandboxes never talk to an old proxy.
      const id = (await podman.run(['image', 'inspect', '--format', '{{.Id}}', GATEWAY_IMAGE])).stdout.trim()
      const retired = await retireStaleGateways(podman, id)
      if (retired.length) say(`replaced the podshell gateway running an older image (${retired.join(', ')})`)
      return { gatewayReplaced: retired.length > 0 }
    },
    ensureGateway: (podman, say) => ensureGateway(podman, dataDir, { env, say }),
    registerWithGateway: name => gateway.reload(name),
    unregisterFromGateway: async name => {
      await gateway.remove(name)
    },
    gatewayAlive: () => gateway.ping().then(() => true, () => false),
    storeInitialPolicy: (name, text, source) => {
      // No policy: OpenShell's restrictive default (deny all egress), stored like any other so
      // `policy get` shows what is in force. Its sections need no warning: nothing in it is loosened.
      if (text === undefined) {
        new PolicyStore(sandboxPolicyDir(dataDir, name)).add(restrictiveDefaultPolicy(), 'default')
        return { warnings: [] }
      }
      const { policy, warnings } = parsePolicyText(text, source)
      new PolicyStore(sandboxPolicyDir(dataDir, name)).add(policy, source)
      return { warnings: [...warnings, ...unenforcedWarnings(policy)] }
    },
    prepareCredentials: async (podman, name, providers, mode) => {
      const inj = await prepareInjection(podman, dataDir, name, providers, { mode })
      // The real values go to the gateway's memory only (placeholder mode); none in env mode. Best
      // effort: a gateway that cannot take them now fails closed (403 credential_unavailable) and
      // gets them from the next command that ensures it (restoreCredentials; `start` does).
      await gateway.call({ op: 'credentials', sandbox: name, credentials: inj.held }).catch(() => undefined)
      return inj
    },
    removeCredentials: (podman, name) => removeSandboxSecrets(podman, name),
    gcCredentials: async (podman, live) => {
      await gcOrphanedSecrets(podman, dataDir, live)
    },
    credentialsNeedGc: () => lockStale(ProviderLock.lockPath(dataDir)),
    audit: (name, event, detail) => appendLifecycle(dataDir, name, { event, ...detail }),
    seccompProfile: env.PODSHELL_SECCOMP_PROFILE ?? DEFAULT_SECCOMP,
    prepareTrust: async name => (await import('../tls/sandbox-tls.js')).prepareSandboxTls(dataDir, name, env),
  }
}
