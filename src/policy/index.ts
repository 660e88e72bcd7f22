/** The OpenShell v1 policy: schema and validation, live-change rules, updates, revision storage. */
export {
  PolicySchema,
  PolicyError,
  formatKeyPath,
  endpointPorts,
  hostWildcardProblem,
  hostPatternProblem,
  HostPattern,
  MAX_POLICY_BYTES,
  MAX_FILESYSTEM_PATHS,
  MAX_PATH_BYTES,
  MAX_MIDDLEWARES,
  MAX_POLICY_DEPTH,
  MAX_YAML_ALIAS_COUNT,
} from './schema.js'
export { parsePolicyText, validatePolicy, loadPolicyFile, formatPolicyIssues } from './parse.js'
export { restrictiveDefaultPolicy, policyToYaml, policyHash, unenforcedWarnings, policyJsonSchema } from './document.js'
export type {
  Policy,
  NetworkPolicy,
  Endpoint,
  L7Rule,
  L7AllowRule,
  Binary,
  NetworkMiddleware,
  QueryMatcher,
  ParamMatcher,
} from './schema.js'
export { checkLiveChange } from './live.js'
export {
  applyPolicyUpdate,
  parseEndpointSpec,
  parseHostPortSpec,
  parseRuleSpec,
  parseHost,
  parsePort,
  generatedRuleName,
} from './update.js'
export type { PolicyUpdateOps } from './update.js'
export { PolicyStore } from './store.js'
export type { PolicyRevision, RevisionStatus } from './store.js'
