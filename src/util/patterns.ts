/**
 * The plain regular expressions behind podshell's name rules, without zod, for code on the fast
 * path (`sandbox exec`) that must not load the validation library. src/util/validate.ts builds its
 * schemas from these, so the rules exist once.
 */
/** DNS-1123 label, at most 63 characters (OpenShell's sandbox names). */
export const SANDBOX_NAME_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/
/** POSIX environment variable names. */
export const ENV_KEY_RE = /^[A-Za-z_][A-Za-z0-9_]{0,254}$/
