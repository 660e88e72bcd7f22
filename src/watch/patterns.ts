/** Host-executed file pattern syntax: segments of letters, digits, `._-*`; no leading `/`, no empty segment. */
export const PATTERN_RE = /^(?!\/)(?:[A-Za-z0-9._*-]+\/)*[A-Za-z0-9._*-]+$/
