import { describe, it, expect, beforeEach, afterEach } from 'vitest'
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync, realpathSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { stringify } from 'yaml'
import {
  applyEffectiveDefaults,
  checkCeiling,
  enforceEnterprise,
  loadEffectiveConfig,
  loadUserConfig,
  type EffectiveConfig,
} from '../../src/config/index.js'
import { type Policy } from '../../src/policy/schema.js'
import { parsePolicyText } from '../../src/policy/parse.js'
import { renderTemplate } from '../../src/policy/templates.js'
import type { CreateOptions } from '../../src/sandbox/types.js'
import { errorOf } from '../helpers/errors.js'
import { PolicyEngine } from '../../src/gateway/policy-engine.js'
import { canonicalizeHost } from '../../src/gateway/address.js'

let root: string
let env: Record<string, string>
let defaultPath: string

beforeEach(() => {
  root = realpathSync(mkdtempSync(join(tmpdir(), 'podshell-cfg-')))
  env = { HOME: join(root, 'home'), XDG_CONFIG_HOME: join(root, 'home', '.config') }
  mkdirSync(join(root, 'home', '.config', 'podshell'), { recursive: true })
  mkdirSync(join(root, 'etc'), { recursive: true })
  defaultPath = join(root, 'etc', 'enterprise.yaml')
})
afterEach(() => rmSync(root, { recursive: true, force: true }))

const writeUser = (o: unknown) => writeFileSync(join(root, 'home', '.config', 'podshell', 'config.yaml'), typeof o === 'string' ? o : stringify(o))
const writeEnterprise = (o: unknown, file = defaultPath) => writeFileSync(file, typeof o === 'string' ? o : stringify(o))
const load = (e: Record<string, string> = env) => loadEffectiveConfig(e, { enterpriseDefaultPath: defaultPath })

function baseOpts(o: Partial<CreateOptions> = {}): CreateOptions {
  return { mounts: [], env: {}, labels: {}, detach: false, keep: true, command: ['claude'], providers: [], ...o }
}

const policyOf = (yaml: string): Policy => parsePolicyText(yaml, 'test').policy

describe('user config (~/.config/podshell/config.yaml)', () => {
  it('is empty when the file does not exist', () => {
    expect(loadUserConfig(env).config).toEqual({})
  })

  it('reads every field', () => {
    writeUser({
      policy_dir: '~/policies',
      default_session_type: 'investigation',
      default_policy: 'strict.yaml',
      image: 'localhost/my-agent:1',
      resources: { cpu: '2', memory: '4Gi', pids: 2048 },
      runtime: 'runc',
      read_deny_scan: { max_depth: 10, timeout_ms: 2000 },
    })
    const { effective } = load()
    expect(effective.policyDir).toBe(join(root, 'home', 'policies'))
    expect(effective.policyDirLocked).toBe(false)
    expect(effective.defaultSessionType).toBe('investigation')
    expect(effective.image).toBe('localhost/my-agent:1')
    expect(effective.resources).toEqual({ cpu: '2', memory: '4Gi', pids: 2048 })
    expect(effective.runtime).toBe('runc')
    expect(effective.readDenyScan).toEqual({ maxDepth: 10, timeoutMs: 2000 })
    expect(effective.enterpriseFile).toBeUndefined()
    expect(effective.allowSensitive).toBe(true)
  })

  it('reports an invalid value as one line naming the file and the key path', () => {
    writeUser({ resources: { cpu: 'lots' } })
    const e = errorOf(() => load())
    expect(e.oneLine()).toMatch(/^invalid config .*config\.yaml: resources\.cpu: must be cores/)
    expect(e.oneLine()).not.toContain('\n')
    expect(e.exitCode).toBe(2)
  })

  it('reports an unknown key with its full path (strict)', () => {
    writeUser({ resources: { cpus: '2' } })
    expect(errorOf(() => load()).oneLine()).toMatch(/resources\.cpus: unknown key/)
    writeUser({ polcy_dir: '/x' })
    expect(errorOf(() => load()).oneLine()).toMatch(/polcy_dir: unknown key/)
  })

  it('reports YAML syntax errors, duplicate keys and relative paths', () => {
    writeUser('image: [unclosed\n')
    expect(errorOf(() => load()).oneLine()).toMatch(/invalid config .*config\.yaml \(line \d+\)/)
    writeUser('image: a/b\nimage: c/d\n')
    expect(errorOf(() => load()).oneLine()).toMatch(/unique|duplicate/i)
    writeUser({ policy_dir: 'relative/dir' })
    expect(errorOf(() => load()).oneLine()).toMatch(/policy_dir: must be an absolute path or start with ~\//)
    writeUser({ policy_dir: '/etc/../root' })
    expect(errorOf(() => load()).oneLine()).toMatch(/policy_dir: must not contain "\.\."/)
  })
})

describe('enterprise config: location and the lock rule', () => {
  it('applies /etc/podshell/enterprise.yaml when it exists', () => {
    writeEnterprise({ image: 'registry.corp/agent:1' })
    const { effective } = load()
    expect(effective.enterpriseFile).toBe(defaultPath)
    expect(effective.image).toBe('registry.corp/agent:1')
  })

  it('lets PODSHELL_ENTERPRISE_CONFIG point elsewhere when the default file does not lock', () => {
    writeEnterprise({ image: 'registry.corp/agent:1' })
    const other = join(root, 'other.yaml')
    writeEnterprise({ image: 'registry.corp/agent:2' }, other)
    const { effective } = load({ ...env, PODSHELL_ENTERPRISE_CONFIG: other })
    expect(effective.enterpriseFile).toBe(other)
    expect(effective.image).toBe('registry.corp/agent:2')
  })

  it('refuses PODSHELL_ENTERPRISE_CONFIG when the default file sets lock_path: true (no escape by env)', () => {
    writeEnterprise({ lock_path: true, allow_sensitive: false })
    const other = join(root, 'permissive.yaml')
    writeEnterprise({ allow_sensitive: true }, other)
    const e = errorOf(() => load({ ...env, PODSHELL_ENTERPRISE_CONFIG: other }))
    expect(e.oneLine()).toContain('PODSHELL_ENTERPRISE_CONFIG')
    expect(e.oneLine()).toContain('lock_path: true')
    expect(e.code).toBe('ENTERPRISE_LOCKED')
    // Pointing the variable at the locked file itself (even through a symlink) is fine.
    const link = join(root, 'link.yaml')
    symlinkSync(defaultPath, link)
    expect(load({ ...env, PODSHELL_ENTERPRISE_CONFIG: link }).effective.enterpriseFile).toBe(defaultPath)
  })

  it('ignores lock_path in a file reached through the variable (only the default path can lock)', () => {
    const other = join(root, 'other.yaml')
    writeEnterprise({ lock_path: true }, other)
    const r = load({ ...env, PODSHELL_ENTERPRISE_CONFIG: other })
    expect(r.effective.enterpriseFile).toBe(other)
    expect(r.warnings.join('\n')).toContain('lock_path has effect only in')
  })

  it('fails closed: a variable naming a missing file, a relative path, or an unparsable default file is an error', () => {
    expect(errorOf(() => load({ ...env, PODSHELL_ENTERPRISE_CONFIG: join(root, 'nope.yaml') })).oneLine()).toMatch(/cannot read enterprise config/)
    expect(errorOf(() => load({ ...env, PODSHELL_ENTERPRISE_CONFIG: 'rel.yaml' })).oneLine()).toMatch(/must be an absolute path/)
    writeEnterprise('lock_path: [\n')
    expect(errorOf(() => load()).oneLine()).toMatch(/invalid enterprise config/)
    writeEnterprise({ required: { images: ['-bad'] } })
    expect(errorOf(() => load()).oneLine()).toMatch(/required\.images\.0: must be an image reference/)
  })

  it('validates network_ceiling as an OpenShell network_policies block, with key paths', () => {
    writeEnterprise({ network_ceiling: { all: { endpoints: [{ host: '*.com', port: 443 }] } } })
    expect(errorOf(() => load()).oneLine()).toMatch(/network_ceiling\.all\.endpoints\.0\.host: TLD wildcard/)
  })
})

describe('precedence: enterprise > user, field by field', () => {
  it('takes each field from the enterprise file when it sets it, else from the user', () => {
    writeUser({ image: 'localhost/mine:1', default_session_type: 'development', resources: { cpu: '4', memory: '8Gi' }, runtime: 'crun' })
    writeEnterprise({ image: 'registry.corp/agent:1', resources: { memory: '2Gi' } })
    const { effective } = load()
    expect(effective.image).toBe('registry.corp/agent:1')
    expect(effective.defaultSessionType).toBe('development')
    expect(effective.resources).toEqual({ cpu: '4', memory: '2Gi' })
    expect(effective.runtime).toBe('crun')
  })

  it('locks policy_dir only when the enterprise file sets it', () => {
    writeUser({ policy_dir: '/home/me/policies' })
    expect(load().effective.policyDirLocked).toBe(false)
    writeEnterprise({ policy_dir: '/etc/podshell/policies' })
    const { effective } = load()
    expect(effective.policyDir).toBe('/etc/podshell/policies')
    expect(effective.policyDirLocked).toBe(true)
  })

  it('defaults: with an enterprise file, sensitive mounts are off and read-only session types are enforced', () => {
    writeEnterprise({})
    const { effective } = load()
    expect(effective.allowSensitive).toBe(false)
    expect(effective.required.readOnlyWorkdir).toEqual(['investigation', 'ticket_creation'])
    expect(effective.required.defaultSeccomp).toBe(true)
  })

  it('applyEffectiveDefaults fills only what the command line left open', () => {
    writeUser({ image: 'localhost/mine:1', resources: { cpu: '1' }, default_session_type: 'investigation' })
    const { effective } = load()
    const o = applyEffectiveDefaults(baseOpts({ workdir: '/p', cpu: '3' }), effective)
    expect(o.image).toBe('localhost/mine:1')
    expect(o.cpu).toBe('3')
    expect(o.sessionType).toBe('investigation')
    expect(o.workdirMode).toBe('ro')
  })
})

describe('enforceEnterprise: options that weaken the sandbox are refused', () => {
  function eff(o: unknown): EffectiveConfig {
    writeEnterprise(o)
    return load().effective
  }

  it('does nothing without an enterprise file', () => {
    expect(() => enforceEnterprise(baseOpts({ allowSensitive: true, seccompProfile: '/x.json', image: 'anything/at:all' }), undefined, load().effective)).not.toThrow()
  })

  it('refuses allow_sensitive unless the enterprise file allows it', () => {
    const e = errorOf(() => enforceEnterprise(baseOpts({ allowSensitive: true }), undefined, eff({})))
    expect(e.oneLine()).toMatch(/refused by the enterprise configuration \(.*enterprise\.yaml\): mounting sensitive host paths/)
    expect(e.code).toBe('ENTERPRISE_REFUSED')
    expect(() => enforceEnterprise(baseOpts({ allowSensitive: true }), undefined, eff({ allow_sensitive: true }))).not.toThrow()
  })

  it('credentials.allow_env_mode: false refuses --credential-mode env in one line; placeholder mode and the default stay allowed', () => {
    const e = errorOf(() => enforceEnterprise(baseOpts({ credentialMode: 'env' }), undefined, eff({ credentials: { allow_env_mode: false } })))
    expect(e.oneLine()).toMatch(/refused by the enterprise configuration .*--credential-mode env.*credentials\.allow_env_mode: false/)
    expect(() => enforceEnterprise(baseOpts({ credentialMode: 'placeholder' }), undefined, eff({ credentials: { allow_env_mode: false } }))).not.toThrow()
    expect(() => enforceEnterprise(baseOpts({ credentialMode: 'env' }), undefined, eff({}))).not.toThrow()
  })

  it('refuses a custom seccomp profile, and anything but the mandatory one when set', () => {
    expect(errorOf(() => enforceEnterprise(baseOpts({ seccompProfile: '/tmp/permissive.json' }), undefined, eff({}))).oneLine()).toMatch(/custom seccomp profile/)
    const mandatory = join(root, 'corp-seccomp.json')
    writeFileSync(mandatory, '{}')
    const e2 = eff({ seccomp_profile: mandatory })
    expect(errorOf(() => enforceEnterprise(baseOpts(), undefined, e2)).oneLine()).toMatch(/not the mandatory/)
    expect(errorOf(() => enforceEnterprise(baseOpts({ seccompProfile: '/tmp/other.json' }), undefined, e2)).oneLine()).toMatch(/not the mandatory/)
    expect(() => enforceEnterprise(applyEffectiveDefaults(baseOpts(), e2), undefined, e2)).not.toThrow()
  })

  it('refuses images outside required.images (exact or prefix*)', () => {
    const e = eff({ required: { images: ['registry.corp/agents/*', 'localhost/podshell-sandbox:latest'] } })
    expect(() => enforceEnterprise(baseOpts(), undefined, e)).not.toThrow()
    expect(() => enforceEnterprise(baseOpts({ image: 'registry.corp/agents/claude:2' }), undefined, e)).not.toThrow()
    expect(errorOf(() => enforceEnterprise(baseOpts({ image: 'docker.io/evil/agent' }), undefined, e)).oneLine()).toMatch(/image docker\.io\/evil\/agent is not in required\.images/)
  })

  it('refuses a read-write workdir, an overlapping rw mount, or include_workdir: true for read-only session types', () => {
    const e = eff({})
    const wd = join(root, 'proj')
    mkdirSync(join(wd, 'src'), { recursive: true })
    expect(errorOf(() => enforceEnterprise(baseOpts({ sessionType: 'investigation', workdir: wd, workdirMode: 'rw' }), undefined, e)).oneLine()).toMatch(/investigation session with a read-write workdir/)
    expect(
      errorOf(() => enforceEnterprise(baseOpts({ sessionType: 'ticket_creation', workdir: wd, workdirMode: 'ro', mounts: [{ source: join(wd, 'src'), target: join(wd, 'src'), mode: 'rw' }] }), undefined, e)).oneLine(),
    ).toMatch(/read-write mount .* overlapping the workdir/)
    expect(errorOf(() => enforceEnterprise(baseOpts({ sessionType: 'investigation', workdir: wd, workdirMode: 'ro' }), policyOf(renderTemplate('development')), e)).oneLine()).toMatch(/include_workdir: true/)
    expect(() => enforceEnterprise(baseOpts({ sessionType: 'investigation', workdir: wd, workdirMode: 'ro' }), policyOf(renderTemplate('investigation')), e)).not.toThrow()
    expect(() => enforceEnterprise(baseOpts({ sessionType: 'development', workdir: wd, workdirMode: 'rw' }), policyOf(renderTemplate('development')), e)).not.toThrow()
  })

  it('refuses a sandbox without a session type when required.session_type is set', () => {
    expect(errorOf(() => enforceEnterprise(baseOpts(), undefined, eff({ required: { session_type: true } }))).oneLine()).toMatch(/must name a session type/)
  })
})

describe('locked policy_dir', () => {
  let dir: string
  let e: EffectiveConfig
  beforeEach(() => {
    dir = join(root, 'etc', 'policies')
    mkdirSync(dir, { recursive: true })
    writeFileSync(join(dir, 'development.yaml'), renderTemplate('development'))
    writeEnterprise({ policy_dir: dir })
    e = load().effective
  })

  it('accepts a policy file inside it', () => {
    const f = join(dir, 'development.yaml')
    expect(() => enforceEnterprise(baseOpts({ policyFile: f, policyText: 'x' }), undefined, e)).not.toThrow()
  })

  it('refuses a policy file outside it, naming both', () => {
    const f = join(root, 'mine.yaml')
    writeFileSync(f, renderTemplate('development'))
    const err = errorOf(() => enforceEnterprise(baseOpts({ policyFile: f, policyText: 'x' }), undefined, e))
    expect(err.oneLine()).toContain(`policy ${f} is outside the locked policy_dir ${dir}`)
  })

  it('compares realpaths: a symlink inside the dir pointing out is refused, a symlink elsewhere pointing in is accepted', () => {
    const outside = join(root, 'wide.yaml')
    writeFileSync(outside, renderTemplate('development'))
    symlinkSync(outside, join(dir, 'sneaky.yaml'))
    expect(errorOf(() => enforceEnterprise(baseOpts({ policyFile: join(dir, 'sneaky.yaml'), policyText: 'x' }), undefined, e)).oneLine()).toMatch(/outside the locked policy_dir/)
    symlinkSync(join(dir, 'development.yaml'), join(root, 'alias.yaml'))
    expect(() => enforceEnterprise(baseOpts({ policyFile: join(root, 'alias.yaml'), policyText: 'x' }), undefined, e)).not.toThrow()
    // A "../" trick in the name resolves outside too.
    expect(errorOf(() => enforceEnterprise(baseOpts({ policyFile: `${dir}/../../wide.yaml`, policyText: 'x' }), undefined, e)).oneLine()).toMatch(/outside/)
  })

  it('refuses inline and template policies, allows the restrictive default (no policy)', () => {
    expect(errorOf(() => enforceEnterprise(baseOpts({ policyText: renderTemplate('investigation') }), undefined, e)).oneLine()).toMatch(/inline or template policy is not accepted/)
    expect(() => enforceEnterprise(baseOpts(), undefined, e)).not.toThrow()
  })
})

describe('network ceiling (tighten-only)', () => {
  const ceilingYaml = {
    model: { endpoints: [{ host: 'api.anthropic.com', port: 443 }] },
    corp: { endpoints: [{ host: '**.corp.example', ports: [443, 8443] }] },
    github: { endpoints: [{ host: 'api.github.com', port: 443, protocol: 'rest', enforcement: 'enforce', access: 'read-only' }] },
    internal: { endpoints: [{ host: 'db.corp.example', port: 5432, allowed_ips: ['10.1.0.0/16'] }] },
    pinned: { endpoints: [{ host: 'pinned.example.com', port: 443 }], binaries: [{ path: '/usr/bin/*' }] },
    vendor: { endpoints: [{ host: '*.api.vendor.example', port: 443 }] },
  }
  const ceiling = () => parsePolicyText(stringify({ version: 1, network_policies: ceilingYaml }), 'ceiling').policy.network_policies!
  const user = (np: unknown) => policyOf(stringify({ version: 1, network_policies: np }))

  it('accepts a policy within the ceiling (equal, narrower host pattern, subset of ports)', () => {
    const p = user({
      a: { endpoints: [{ host: 'api.anthropic.com', port: 443 }] },
      b: { endpoints: [{ host: 'jira.corp.example', port: 8443 }, { host: '*.eng.corp.example', port: 443 }] },
      c: { endpoints: [{ host: 'api.github.com', port: 443, protocol: 'rest', enforcement: 'enforce', access: 'read-only' }] },
      d: { endpoints: [{ host: 'db.corp.example', port: 5432, allowed_ips: ['10.1.2.0/24'] }] },
      e: { endpoints: [{ host: 'pinned.example.com', port: 443 }], binaries: [{ path: '/usr/bin/curl' }] },
      f: { endpoints: [{ host: 'eu.api.vendor.example', port: 443 }, { host: '*.api.vendor.example', port: 443 }] },
    })
    expect(checkCeiling(p, ceiling())).toEqual([])
  })

  it('names the offending endpoint exactly when a host is outside the ceiling', () => {
    const v = checkCeiling(user({ pypi: { endpoints: [{ host: 'api.anthropic.com', port: 443 }, { host: 'pypi.org', port: 443 }] } }), ceiling())
    expect(v).toEqual(['network_policies.pypi.endpoints[1] (pypi.org:443): not within the enterprise network ceiling: no ceiling endpoint allows host pypi.org'])
  })

  it('refuses a wider host pattern, another port, a wider access, wider allowed_ips, another binary', () => {
    const cases: [unknown, RegExp][] = [
      [{ endpoints: [{ host: '**.other.example', port: 443 }] }, /\(\*\*\.other\.example:443\).*no ceiling endpoint allows host/],
      [{ endpoints: [{ host: '**.api.vendor.example', port: 443 }] }, /no ceiling endpoint allows host \*\*\.api\.vendor\.example/],
      [{ endpoints: [{ host: '*.vendor.example', port: 443 }] }, /no ceiling endpoint allows host \*\.vendor\.example/],
      [{ endpoints: [{ host: 'corp.example', port: 443 }] }, /no ceiling endpoint allows host corp\.example/],
      [{ endpoints: [{ host: 'api.anthropic.com', port: 8443 }] }, /port 8443 is not allowed/],
      [{ endpoints: [{ host: 'x.corp.example', ports: [443, 22] }] }, /port 22 is not allowed/],
      [{ endpoints: [{ host: 'api.github.com', port: 443 }] }, /protocol rest/],
      [{ endpoints: [{ host: 'api.github.com', port: 443, protocol: 'rest', access: 'read-only' }] }, /enforcement: audit count as full/],
      [{ endpoints: [{ host: 'api.github.com', port: 443, protocol: 'rest', enforcement: 'enforce', access: 'read-write' }] }, /access read-write is wider than the ceiling's read-only/],
      [{ endpoints: [{ host: 'api.github.com', port: 443, protocol: 'rest', enforcement: 'enforce', rules: [{ allow: { method: 'POST', path: '/repos/**' } }] }] }, /methods outside the ceiling's read-only/],
      [{ endpoints: [{ host: 'db.corp.example', port: 5432, allowed_ips: ['10.0.0.0/8'] }] }, /allowed_ips 10\.0\.0\.0\/8 is not within/],
      [{ endpoints: [{ host: 'pinned.example.com', port: 443 }], binaries: [{ path: '/opt/evil' }] }, /binary \/opt\/evil is not allowed/],
      [{ endpoints: [{ host: 'pinned.example.com', port: 443 }] }, /restricts binaries but this entry lists none/],
    ]
    for (const [rule, re] of cases) {
      const v = checkCeiling(user({ r: rule }), ceiling())
      expect(v.length, JSON.stringify(rule)).toBe(1)
      expect(v[0], JSON.stringify(rule)).toMatch(/^network_policies\.r\.endpoints\[0\] \(/)
      expect(v[0], JSON.stringify(rule)).toMatch(re)
    }
  })

  it('accepts L7 rules whose methods all lie within the ceiling preset', () => {
    const p = user({ r: { endpoints: [{ host: 'api.github.com', port: 443, protocol: 'rest', enforcement: 'enforce', rules: [{ allow: { method: 'GET', path: '/repos/**' } }, { allow: { method: 'HEAD', path: '/**' } }] }] } })
    expect(checkCeiling(p, ceiling())).toEqual([])
  })

  it('enforceEnterprise refuses a user policy wider than the ceiling, naming the offending endpoint', () => {
    writeEnterprise({ network_ceiling: ceilingYaml })
    const e = load().effective
    const dev = policyOf(renderTemplate('development'))
    const err = errorOf(() => enforceEnterprise(baseOpts({ sessionType: 'development' }), dev, e))
    expect(err.oneLine()).toMatch(/refused by the enterprise configuration .*: network_policies\.\w+\.endpoints\[\d+\] \([^)]+\): not within the enterprise network ceiling/)
    expect(err.oneLine()).toMatch(/\(\+\d+ more\)/)
    expect(() => enforceEnterprise(baseOpts({ sessionType: 'investigation' }), policyOf(renderTemplate('investigation')), e)).not.toThrow()
  })
})

describe('enterprise ceiling bypass (issue 10): one host rule for the ceiling and the gateway', () => {
  it('a ceiling host the gateway would read differently (api-[ab].example.com) is itself a config error', () => {
    writeEnterprise({ network_ceiling: { api: { endpoints: [{ host: 'api-[ab].example.com', port: 443 }] } } })
    const line = errorOf(() => load()).oneLine()
    expect(line).toMatch(/network_ceiling\.api\.endpoints\.0\.host: host pattern 'api-\[ab\]\.example\.com' contains '\['/)
    expect(line).not.toContain('\n')
  })

  it.each([
    ['api.example.com', 'api-1.example.com', false],
    ['api.example.com', 'api.example.com', true],
    ['*.example.com', 'api-1.example.com', true],
    ['api-*.example.com', 'api-1.example.com', true],
    ['api-*.example.com', 'web-1.example.com', false],
    ['*.example.com', 'a.b.example.com', false],
    ['**.example.com', 'a.b.example.com', true],
  ])('ceiling %s, user host %s: create-time check (enforceEnterprise) agrees with the gateway (%s)', (ceilingHost, userHost, within) => {
    writeEnterprise({ network_ceiling: { c: { endpoints: [{ host: ceilingHost, port: 443 }] } } })
    const eff = load().effective
    const policy = policyOf(stringify({ version: 1, network_policies: { u: { endpoints: [{ host: userHost, port: 443 }] } } }))
    // The function SandboxRuntime's create path calls (src/sandbox/spec.ts), not the CLI hook.
    const refuse = () => enforceEnterprise(baseOpts(), policy, eff)
    if (within) expect(refuse).not.toThrow()
    else expect(errorOf(refuse).oneLine()).toMatch(new RegExp(`not within the enterprise network ceiling: no ceiling endpoint allows host ${userHost.replace(/\./g, '\\.')}`))
    // The gateway, given the ceiling as a policy, decides the same way for the user's host.
    const gw = PolicyEngine.compile({ network_policies: eff.networkCeiling! }).decideConnect(canonicalizeHost(userHost), 443)
    expect(gw.allowed).toBe(within)
  })
})
