import { join } from 'node:path'

/** Files of TLS inspection below the data dir (see src/tls/ca.ts and src/tls/trust.ts). */
export const tlsStateDir = (data: string) => join(data, 'gateway', 'tls')
export const caDir = (data: string) => join(tlsStateDir(data), 'ca')
export const previousCaDir = (data: string) => join(tlsStateDir(data), 'previous')
export const upstreamRootsFile = (data: string) => join(tlsStateDir(data), 'upstream-roots.pem')
export const sandboxTlsDir = (data: string, name: string) => join(data, 'sandboxes', name, 'tls')
