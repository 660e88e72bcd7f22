import { describe, it, expect } from 'vitest'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parsePolicyText, loadPolicyFile } from '../../src/policy/parse.js'
import { policyToYaml, policyHash, unenforcedWarnings } from '../../src/policy/document.js'

/**
 * Every OpenShell policy collected from the OpenShell and OpenShell-Community repositories must be
 * accepted: parity means a document OpenShell accepts, podshell accepts.
 */
const fixturesDir = process.env.PODSHELL_FIXTURES_DIR ?? fileURLToPath(new URL('../fixtures/openshell-policies/', import.meta.url))

function fixtureFiles(): string[] {
  return readdirSync(fixturesDir)
    .filter(f => /\.ya?ml$/.test(f))
    .map(f => join(fixturesDir, f))
    .filter(f => statSync(f).isFile())
}

describe('OpenShell fixture policies', () => {
  const files = fixtureFiles()

  it('finds fixture files to check (an empty folder must not pass silently)', () => {
    expect(files.length).toBeGreaterThan(0)
  })

  for (const file of files) {
    it(`accepts ${file.split('/').pop()}`, () => {
      const { policy } = loadPolicyFile(file)
      expect(policy.version).toBe(1)
      // Canonical YAML round-trips to the same policy (same hash).
      const again = parsePolicyText(policyToYaml(policy), 'roundtrip').policy
      expect(policyHash(again)).toBe(policyHash(policy))
      expect(again).toEqual(policy)
      // Whatever podshell does not enforce is said, never silent.
      const warnings = unenforcedWarnings(policy)
      if (policy.network_policies && Object.keys(policy.network_policies).length > 0) {
        expect(warnings.some(w => w.includes('.binaries: '))).toBe(true)
      }
      expect(readFileSync(file, 'utf8').length).toBeGreaterThan(0)
    })
  }
})
