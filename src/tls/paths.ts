import { join } from 'node:path'
import { gatewaySandboxDir } from '../config/paths.js'

/** Files of TLS inspection below the data dir (see src/tls/ca.ts and src/tls/trust.ts). */
export const tlsStateDir = (data: string) => join(data, 'gateway', 'tls')
export const caDir = (data: string) => join(tlsStateDir(data), 'ca')
export const previousCaDir = (data: string) => join(tlsStateDir(data), 'previous')
export const upstreamRootsFile = (data: string) => join(tlsStateDir(data), 'upstream-roots.pem')
/** The sandbox's trust bundle (mounted read-only into the agent; the gateway reads its CA's fingerprint). */
export const sandboxTlsDir = (data: string, name: string) => join(gatewaySandboxDir(data, name), 'tls')
