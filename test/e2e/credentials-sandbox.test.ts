import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { execa } from 'execa'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { cli, podman, uniqueName, hostDir, podExists, TEST_HOME, CLI, testEnv } from '../helpers/cli.js'

/**
 * Providers end to end, through real sandboxes: the credential is in the agent's environment and
 * nowhere else a sandbox or a user's tooling could read it — not in the sandbox's filesystem, not
 * in podshell's state dir, logs or any -o json output — and Podman holds no secret of the sandbox
 * after it is deleted or after its create was killed.
 */
const VALUE = `psk-${Math.random().toString(36).slice(2)}-${Date.now().toString(36)}-credential`
const CONFIG_URL = 'https://jira.example.test'
let provider: string
let name: string
let work: string

/** Every file under `dir` whose bytes contain `needle` (skipping unreadable entries and sockets). */
function filesContaining(dir: string, needle: string): string[] {
  const hits: string[] = []
  const walk = (d: string) => {
    let entries: string[]
    try {
      entries = readdirSync(d)
    } catch {
      return
    }
    for (const e of entries) {
      const p = join(d, e)
      let st
      try {
        st = statSync(p)
      } catch {
        continue
      }
      if (st.isDirectory()) walk(p)
      else if (st.isFile()) {
        try {
          if (readFileSync(p).includes(needle)) hits.push(p)
        } catch {
          // unreadable: not ours
        }
      }
    }
  }
  walk(dir)
  return hits
}

async function podshellSecrets(): Promise<string[]> {
  const r = await podman(['secret', 'ls', '--format', '{{.Name}}'])
  return r.stdout.split('\n').filter(n => n.startsWith('podshell.'))
}

beforeAll(async () => {
  provider = uniqueName('jira')
  work = hostDir('cred')
  const c = await cli(['provider', 'create', '--name', provider, '--type', 'jira', '--credential', 'JIRA_API_TOKEN', '--config', `JIRA_URL=${CONFIG_URL}`], {
    env: { JIRA_API_TOKEN: VALUE },
  })
  expect(c.code, c.stderr).toBe(0)
  name = uniqueName('cred')
  const r = await cli(['sandbox', 'create', '--name', name, '--workdir', work, '--provider', provider, '--detach'])
  expect(r.code, r.stderr).toBe(0)
})

afterAll(async () => {
  await cli(['sandbox', 'delete', name])
  await cli(['provider', 'delete', provider, '--force'])
})

describe('a provider credential in a sandbox', () => {
  it('is a same-shaped placeholder in the agent environment (issue 12), with the provider config', async () => {
    const r = await cli(['sandbox', 'exec', '-n', name, '--', 'sh', '-c', 'printf "%s|%s" "$JIRA_API_TOKEN" "$JIRA_URL"'])
    const [token, url] = r.stdout.split('|')
    expect(url).toBe(CONFIG_URL)
    expect(token).toHaveLength(VALUE.length)
    expect(token!.startsWith('psk-')).toBe(true)
    expect(token).not.toBe(VALUE)
  })

  it('has no copy anywhere in the sandbox filesystem (root, home, /tmp, /run, every mount)', async () => {
    // grep runs inside the sandbox over everything it can see, except /proc and /sys (where the
    // process environment itself lives, by design). A planted copy proves the search finds one.
    const planted = await cli(['sandbox', 'exec', '-n', name, '--', 'sh', '-c', `printf %s "$JIRA_API_TOKEN" > /tmp/control-copy; grep -rlsF --exclude-dir=proc --exclude-dir=sys -e "$JIRA_API_TOKEN" / 2>/dev/null; rm /tmp/control-copy`])
    expect(planted.stdout.trim().split('\n')).toEqual(['/tmp/control-copy'])
  })

  it('has no copy in the state dir, the audit log or the outputs of podshell', async () => {
    expect(filesContaining(TEST_HOME, VALUE)).toEqual([])
    for (const args of [
      ['sandbox', 'get', name, '-o', 'json'],
      ['sandbox', 'list', '-o', 'json'],
      ['sandbox', 'list', '-o', 'yaml'],
      ['provider', 'get', provider, '-o', 'json'],
      ['provider', 'list', '-o', 'json'],
      ['sandbox', 'provider', 'list', name, '-o', 'json'],
      ['policy', 'get', name, '--full', '-o', 'json'],
      ['logs', name, '-n', '1000'],
    ]) {
      const r = await cli(args)
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0)
      expect(r.stdout + r.stderr, args.join(' ')).not.toContain(VALUE)
    }
  })

  it('the injection is in the audit log by provider and variable name', async () => {
    const r = await cli(['logs', name, '-n', '1000'])
    expect(r.stdout).toMatch(new RegExp(`credential_injected.*${provider}.*JIRA_API_TOKEN|${provider}.*JIRA_API_TOKEN`))
  })

  it('a provider that a sandbox uses cannot be deleted without --force; the refusal names the sandbox', async () => {
    const r = await cli(['provider', 'delete', provider])
    expect(r.code).not.toBe(0)
    expect(r.stderr).toContain(name)
  })
})

describe('cleanup', () => {
  it('Podman holds no secret of a deleted sandbox; only the provider secret remains until the provider goes', async () => {
    const other = uniqueName('cred2')
    expect((await cli(['sandbox', 'create', '--name', other, '--provider', provider, '--detach'])).code).toBe(0)
    const during = await podshellSecrets()
    expect((await cli(['sandbox', 'delete', other])).code).toBe(0)
    const after = await podshellSecrets()
    expect(after).toEqual(during)
    expect(after.every(s => s.startsWith(`podshell.provider.${provider}.`))).toBe(true)
  })

  it('after create is killed mid-way (SIGKILL), the next command leaves no pod, container, state or secret of it', async () => {
    const before = await podshellSecrets()
    for (const delay of [150, 400, 700]) {
      const victim = uniqueName('killed')
      const child = execa(process.execPath, [CLI, 'sandbox', 'create', '--name', victim, '--provider', provider, '--detach'], { env: testEnv(), extendEnv: false, reject: false, stdin: 'ignore' })
      await new Promise(r => setTimeout(r, delay))
      child.kill('SIGKILL')
      await child
      const gc = await cli(['gc'])
      expect(gc.code, gc.stderr).toBe(0)
      const listed = (await cli(['sandbox', 'list', '--names'])).stdout.split('\n')
      if (listed.includes(victim)) {
        // The create finished before the kill: then it is a whole sandbox, Ready.
        expect(JSON.parse((await cli(['sandbox', 'get', victim, '-o', 'json'])).stdout).phase).toBe('Ready')
        await cli(['sandbox', 'delete', victim])
      }
      expect(await podExists(victim)).toBe(false)
      expect((await podman(['ps', '-a', '--filter', `label=io.podshell.sandbox=${victim}`, '-q'])).stdout.trim()).toBe('')
      expect(readdirSync(join(TEST_HOME, 'sandboxes'))).not.toContain(victim)
    }
    expect(await podshellSecrets()).toEqual(before)
  })
})
