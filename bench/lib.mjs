// Helpers every bench shares (not a bench itself).
import { networkInterfaces } from 'node:os'

const args = process.argv.slice(2)

/** The number after flag `k` on the command line, or `d`. */
export const opt = (k, d) => (args.includes(k) ? Number(args[args.indexOf(k) + 1]) : d)

/** The median (the mean of the two middle values for an even count). */
export function median(xs) {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}

/**
 * The test network's address (PODSHELL_TEST_ADDR, default 198.18.0.2) when this process runs in
 * the test network namespace (scripts/test-netns.sh), else undefined: bench upstreams bind only
 * there, never to this machine's LAN address.
 */
export function testAddress() {
  const want = process.env.PODSHELL_TEST_ADDR ?? '198.18.0.2'
  return Object.values(networkInterfaces()).flat().find(i => i && i.family === 'IPv4' && i.address === want)?.address
}
