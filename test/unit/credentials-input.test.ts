import { describe, it, expect } from 'vitest'
import { parseCredentialFlags, parseConfigFlags, fromExisting, checkCredentialValue, reservedReason, checkProviderType, MAX_ENV_STRING } from '../../src/credentials/input.js'
import { errorOf } from '../helpers/errors.js'

const SECRET = 'ghp_s3cr3tValueThatMustNeverBePrinted'

describe('--credential parsing', () => {
  it('takes KEY=VALUE from the flag and records that the value was in argv', () => {
    const r = parseCredentialFlags([`GITHUB_TOKEN=${SECRET}`], {})
    expect([...r.values]).toEqual([['GITHUB_TOKEN', SECRET]])
    expect(r.inArgv).toEqual(['GITHUB_TOKEN'])
  })

  it('reads a bare KEY from the caller environment (how daf passes JIRA_API_TOKEN)', () => {
    const r = parseCredentialFlags(['JIRA_API_TOKEN'], { JIRA_API_TOKEN: SECRET })
    expect(r.values.get('JIRA_API_TOKEN')).toBe(SECRET)
    expect(r.inArgv).toEqual([])
  })

  it('keeps "=" inside the value', () => {
    const r = parseCredentialFlags(['K=a=b==c'], {})
    expect(r.values.get('K')).toBe('a=b==c')
  })

  it('fails with one line naming the variable when a bare KEY is not set', () => {
    const e = errorOf(() => parseCredentialFlags(['JIRA_API_TOKEN'], {}))
    expect(e.oneLine()).toContain('JIRA_API_TOKEN is not set in the environment')
    expect(e.oneLine()).not.toContain('\n')
    expect(e.exitCode).toBe(2)
  })

  it('refuses an empty value without printing anything about it', () => {
    expect(errorOf(() => parseCredentialFlags(['TOKEN='], {})).message).toBe('credential TOKEN is empty')
    expect(errorOf(() => parseCredentialFlags(['TOKEN'], { TOKEN: '' })).message).toBe('credential TOKEN is empty')
  })

  it('refuses NUL and oversize values and never quotes the value in the error', () => {
    const nul = `${SECRET}\0x`
    const e1 = errorOf(() => parseCredentialFlags([`TOKEN=${nul}`], {}))
    expect(e1.oneLine()).not.toContain(SECRET)
    const big = SECRET + 'x'.repeat(MAX_ENV_STRING)
    const e2 = errorOf(() => parseCredentialFlags(['TOKEN'], { TOKEN: big }))
    expect(e2.message).toContain('longer than 128 KiB')
    expect(e2.oneLine()).not.toContain(SECRET)
  })

  it('accepts a value exactly at the kernel limit for one environment string', () => {
    const v = 'x'.repeat(MAX_ENV_STRING - 'TOKEN='.length - 1)
    expect(checkCredentialValue('TOKEN', v)).toBe(v)
    expect(() => checkCredentialValue('TOKEN', v + 'x')).toThrow(/128 KiB/)
  })

  it('refuses CR/LF and non-ASCII values (they would be put into headers and URLs), never quoting them', () => {
    expect(() => checkCredentialValue('TOKEN', 'secret-value\n')).toThrow(/credential TOKEN contains a CR or LF/)
    expect(() => checkCredentialValue('TOKEN', 'secret\rvalue')).toThrow(/CR or LF/)
    expect(() => checkCredentialValue('TOKEN', 'sécret')).toThrow(/credential TOKEN contains non-ASCII/)
    expect(() => checkCredentialValue('TOKEN', 'sécret')).not.toThrow(/sécret/)
    expect(checkCredentialValue('TOKEN', 'ghp_ok value')).toBe('ghp_ok value')
  })

  it('counts the limit in bytes, not characters', () => {
    const v = 'é'.repeat((MAX_ENV_STRING - 'TOKEN='.length - 1) / 2 + 1)
    expect(() => checkCredentialValue('TOKEN', v)).toThrow(/128 KiB/)
  })

  it('rejects invalid names, and names given twice', () => {
    expect(() => parseCredentialFlags(['1BAD=x'], {})).toThrow(/invalid credential name/)
    expect(() => parseCredentialFlags(['=x'], {})).toThrow(/invalid credential name/)
    expect(() => parseCredentialFlags(['A-B=x'], {})).toThrow(/invalid credential name/)
    expect(() => parseCredentialFlags(['T=x', 'T=y'], {})).toThrow(/given twice/)
  })

  it('refuses variables that would redirect egress or spoof control env, in any case (peer case 56)', () => {
    for (const k of ['HTTPS_PROXY', 'https_proxy', 'No_Proxy', 'NODE_USE_ENV_PROXY', 'PODSHELL_SANDBOX', 'OPENSHELL_ENDPOINT', 'LD_PRELOAD', 'NODE_OPTIONS', 'SSL_CERT_FILE', 'HOME', 'PATH', '__proto__']) {
      const e = errorOf(() => parseCredentialFlags([`${k}=value`], {}))
      expect(e.message, k).toMatch(/is reserved/)
    }
    expect(reservedReason('GITHUB_TOKEN')).toBeUndefined()
    expect(reservedReason('MY_LD_THING')).toBeUndefined()
  })
})

describe('--config parsing', () => {
  it('parses K=V pairs and keeps their order', () => {
    expect([...parseConfigFlags(['JIRA_URL=https://jira.example.com', 'JIRA_AUTH_TYPE=bearer'])]).toEqual([
      ['JIRA_URL', 'https://jira.example.com'],
      ['JIRA_AUTH_TYPE', 'bearer'],
    ])
  })

  it('allows an empty value and "=" in the value', () => {
    expect(parseConfigFlags(['A=', 'B=x=y']).get('B')).toBe('x=y')
  })

  it('rejects missing "=", newlines, reserved names and repeats', () => {
    expect(() => parseConfigFlags(['JIRA_URL'])).toThrow(/expected KEY=VALUE/)
    expect(() => parseConfigFlags(['=x'])).toThrow(/expected KEY=VALUE/)
    expect(() => parseConfigFlags(['A=x\ny'])).toThrow(/NUL or newlines/)
    expect(() => parseConfigFlags(['HTTP_PROXY=http://evil:1'])).toThrow(/reserved/)
    expect(() => parseConfigFlags(['A=1', 'A=2'])).toThrow(/given twice/)
  })
})

describe('--from-existing', () => {
  it('picks the variables the type knows from the environment, in the table order', () => {
    const r = fromExisting('github', { GH_TOKEN: 'gh-value', GITHUB_TOKEN: 'github-value', UNRELATED: 'x' })
    expect([...r.credentials]).toEqual([
      ['GITHUB_TOKEN', 'github-value'],
      ['GH_TOKEN', 'gh-value'],
    ])
  })

  it("also picks the type's config keys (JIRA_URL for jira), never unrelated variables", () => {
    const r = fromExisting('jira', { JIRA_API_TOKEN: SECRET, JIRA_URL: 'https://jira.example.com', JIRA_AUTH_TYPE: 'bearer', GITHUB_TOKEN: 'no' })
    expect([...r.credentials]).toEqual([['JIRA_API_TOKEN', SECRET]])
    expect(Object.fromEntries(r.config)).toEqual({ JIRA_URL: 'https://jira.example.com', JIRA_AUTH_TYPE: 'bearer' })
  })

  it('skips empty variables and fails when none is set, naming what it looked for', () => {
    const e = errorOf(() => fromExisting('anthropic', { ANTHROPIC_API_KEY: '' }))
    expect(e.message).toContain('ANTHROPIC_API_KEY')
    expect(e.code).toBe('CREDENTIAL_NOT_SET')
  })

  it('fails for generic, which knows no variables', () => {
    expect(() => fromExisting('generic', { X: 'y' })).toThrow(/knows no credential variables/)
  })
})

describe('provider types', () => {
  it('accepts every type of the table and rejects others with the list', () => {
    for (const t of ['claude', 'codex', 'opencode', 'copilot', 'github', 'gitlab', 'generic', 'anthropic', 'openai', 'nvidia', 'jira']) {
      expect(checkProviderType(t)).toBe(t)
    }
    expect(errorOf(() => checkProviderType('aws')).oneLine()).toMatch(/unknown provider type "aws": use one of claude, anthropic/)
  })
})
