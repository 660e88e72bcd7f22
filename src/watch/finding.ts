import { randomBytes } from 'node:crypto'
import { ENGINE, OCSF_VERSION } from '../gateway/audit.js'

const SEVERITY = { Informational: 1, High: 4, Critical: 5 } as const

/** What differs between the watcher's findings (quarantine, disk guard, mount sentinel). */
export interface WatcherFinding {
  sandbox: string
  time: number
  /** Activity Create (status New), or Close (status Resolved) for a finding that ended. */
  close?: boolean
  severity: keyof typeof SEVERITY
  message: string
  title: string
  desc: string
  /** finding_info.types; the analytic is named `analytic` (default: the first type). */
  types: string[]
  analytic?: string
  resource: { name: string; type: string }
  /** action Allowed (1) instead of Denied (2). */
  allowed?: boolean
  disposition?: { id: number; name: string }
  /** Beside `sandbox` and `engine`, which every finding carries. */
  unmapped: Record<string, unknown>
}

/**
 * The OCSF Detection Finding (class 2004, category 2 Findings) of the host-side watcher: the one
 * shape every finding it records takes, whichever guard made it.
 */
export function watcherFindingJson(f: WatcherFinding): Record<string, unknown> {
  const close = f.close === true
  return {
    class_uid: 2004,
    class_name: 'Detection Finding',
    category_uid: 2,
    category_name: 'Findings',
    activity_id: close ? 3 : 1,
    activity_name: close ? 'Close' : 'Create',
    type_uid: close ? 200403 : 200401,
    type_name: close ? 'Detection Finding: Close' : 'Detection Finding: Create',
    time: f.time,
    severity_id: SEVERITY[f.severity],
    severity: f.severity,
    status_id: close ? 4 : 1,
    status: close ? 'Resolved' : 'New',
    message: f.message,
    metadata: { version: OCSF_VERSION, product: { name: 'podshell watcher', vendor_name: 'podshell' }, profiles: ['security_control'], uid: f.sandbox },
    finding_info: {
      uid: randomBytes(8).toString('hex'),
      title: f.title,
      desc: f.desc,
      types: f.types,
      analytic: { name: f.analytic ?? f.types[0], type: 'Rule', type_id: 1 },
    },
    resources: [f.resource],
    action_id: f.allowed ? 1 : 2,
    action: f.allowed ? 'Allowed' : 'Denied',
    ...(f.disposition ? { disposition_id: f.disposition.id, disposition: f.disposition.name } : {}),
    unmapped: { sandbox: f.sandbox, engine: ENGINE, ...f.unmapped },
  }
}
