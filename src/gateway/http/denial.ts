/** The JSON body of a policy denial (403), with the command that would allow the request. */
import type { Decision } from '../policy-engine.js'

export function denyBody(sandbox: string, d: Decision, method: string, host: string, port: number, path: string, detail: string): Record<string, unknown> {
  const l7 = d.layer === 'l7'
  return {
    error: 'policy_denied',
    policy: d.policy ?? '-',
    rule: `${method} ${path}`,
    detail,
    layer: d.layer,
    protocol: l7 ? 'rest' : 'http',
    method,
    path,
    host,
    port,
    rule_missing: { type: l7 ? 'rest_allow' : 'network_endpoint', layer: d.layer, method, path, host, port },
    next_steps: [
      {
        action: 'request_policy_change',
        detail: `The egress policy of sandbox ${sandbox} does not allow this request. Only the user can change it, from outside the sandbox.`,
        command: l7
          ? `podshell policy update ${sandbox} --add-allow ${host}:${port}:${method}:${path}`
          : `podshell policy update ${sandbox} --add-endpoint ${host}:${port}`,
      },
    ],
  }
}
