import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { request } from 'node:http'
import { createServer, type Server } from 'node:net'
import { cli, podman, uniqueName } from '../helpers/cli.js'

/**
 * `forward start|stop|list` and `create --forward` on real rootless Podman: a host loopback port
 * reaches a server listening on the sandbox's own loopback, the sandbox keeps only `lo` (no new
 * egress), the forward outlives the CLI that started it and a killed bridge, `forward list` shows
 * only what really listens, and deleting the sandbox ends its forwards.
 */
const port = () => 20000 + Math.floor(Math.random() * 20000)

function get(p: number): Promise<{ status: number; body: string } | { error: string }> {
  return new Promise(resolve => {
    const req = request({ host: '127.0.0.1', port: p, path: '/', timeout: 10_000 }, res => {
      let body = ''
      res.on('data', d => (body += d))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    })
    req.on('error', e => resolve({ error: (e as NodeJS.ErrnoException).code ?? e.message }))
    req.on('timeout', () => req.destroy(new Error('timeout')))
    req.end()
  })
}

/** The sandbox's server takes a moment to listen: retry for up to 15 s. */
async function getOk(p: number): Promise<{ status: number; body: string }> {
  let last: unknown
  for (let i = 0; i < 30; i++) {
    const r = await get(p)
    if ('status' in r && r.status === 200) return r
    last = r
    await new Promise(res => setTimeout(res, 500))
  }
  throw new Error(`no 200 from 127.0.0.1:${p}: ${JSON.stringify(last)}`)
}

let name: string
let P: number

beforeAll(async () => {
  name = uniqueName('fwd')
  P = port()
  const r = await cli([
    'sandbox',
    'create',
    '--name',
    name,
    '--detach',
    '--',
    'python3',
    '-m',
    'http.server',
    String(P),
    '--bind',
    '127.0.0.1',
    '--directory',
    '/etc',
  ])
  expect(r.code, r.stderr).toBe(0)
})

afterAll(async () => {
  await cli(['forward', 'stop', String(P), name])
  await cli(['sandbox', 'delete', name])
})

describe('forward', () => {
  it('start -d: OpenShell lines; the host port reaches the sandbox loopback after the CLI exited; the sandbox still has only lo', async () => {
    const r = await cli(['forward', 'start', String(P), name, '-d'])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stderr).toContain(
      `✓ Forwarding port ${P} to sandbox ${name} in the background\n  Access at: http://127.0.0.1:${P}/\n  Stop with: podshell forward stop ${P} ${name}\n`,
    )
    const got = await getOk(P)
    expect(got.body).toContain('hostname')
    // The netns's own view (`ip link`): under Podman 5 /sys/class/net is masked (src/podman/sysfs.ts).
    const links = await cli(['sandbox', 'exec', '-n', name, '--', 'sh', '-c', "ip -o link | cut -d: -f2 | tr -d ' '"])
    expect(links.stdout, links.stderr).toBe('lo\n')
  })

  it('forward list shows it running, with its pid', async () => {
    const r = await cli(['forward', 'list'])
    expect(r.stdout).toMatch(/^SANDBOX +BIND +PORT +PID +STATUS$/m)
    expect(r.stdout).toMatch(new RegExp(`^${name} +127\\.0\\.0\\.1 +${P} +\\d+ +running$`, 'm'))
  })

  it('survives kill -9 of the bridge container (the relay does not use it)', async () => {
    expect((await podman(['kill', '-s', 'KILL', `podshell.${name}.bridge`])).code).toBe(0)
    expect((await getOk(P)).status).toBe(200)
  })

  it('refuses, in one line: the same port again, a port in use, a stopped sandbox, a bad spec', async () => {
    const again = await cli(['forward', 'start', String(P), name, '-d'])
    expect(again.code).toBe(1)
    expect(again.stderr).toBe(
      `podshell: port ${P} is already forwarded to sandbox ${name}: stop it first: podshell forward stop ${P} ${name}\n`,
    )
    const busy: Server = createServer()
    const B = port()
    await new Promise<void>(r => busy.listen(B, '127.0.0.1', () => r()))
    try {
      const inUse = await cli(['forward', 'start', String(B), name, '-d'])
      expect(inUse.code).toBe(1)
      expect(inUse.stderr).toBe(`podshell: port ${B} on 127.0.0.1 is in use: stop what listens there, or forward another port\n`)
    } finally {
      busy.close()
    }
    const bad = await cli(['forward', 'start', '70000', name])
    expect(bad.code).toBe(2)
    expect(bad.stderr.trim().split('\n')).toHaveLength(1)
    const stopped = uniqueName('fwdst')
    expect((await cli(['sandbox', 'create', '--name', stopped, '--detach'])).code).toBe(0)
    try {
      expect((await cli(['sandbox', 'stop', stopped])).code).toBe(0)
      const r = await cli(['forward', 'start', String(port()), stopped, '-d'])
      expect(r.code).toBe(1)
      expect(r.stderr).toBe(`podshell: sandbox ${stopped} is Stopped: start it first: podshell sandbox start ${stopped}\n`)
    } finally {
      await cli(['sandbox', 'delete', stopped])
    }
  })

  it('forward stop ends it: OpenShell line, list empty for it, port closed', async () => {
    const r = await cli(['forward', 'stop', String(P), name])
    expect(r.stderr).toBe(`✓ Stopped forward of port ${P} for sandbox ${name}\n`)
    expect((await cli(['forward', 'list'])).stdout).not.toMatch(new RegExp(`^${name} `, 'm'))
    expect(await get(P)).toEqual({ error: 'ECONNREFUSED' })
  })

  it('a forward whose process was killed -9 is not listed (checked, not remembered)', async () => {
    expect((await cli(['forward', 'start', String(P), name, '-d'])).code).toBe(0)
    const row = (await cli(['forward', 'list'])).stdout.split('\n').find(l => l.startsWith(`${name} `))!
    const pid = Number(row.trim().split(/ +/)[3])
    process.kill(pid, 'SIGKILL')
    await new Promise(r => setTimeout(r, 200))
    const r = await cli(['forward', 'list'])
    expect(r.stdout).not.toContain(name)
  })

  it('create --forward forwards before the command runs; sandbox delete ends the forward', async () => {
    const n = uniqueName('fwdc')
    const Q = port()
    const r = await cli([
      'sandbox',
      'create',
      '--name',
      n,
      '--forward',
      String(Q),
      '--detach',
      '--',
      'python3',
      '-m',
      'http.server',
      String(Q),
      '--bind',
      '127.0.0.1',
      '--directory',
      '/etc',
    ])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stderr).toContain(`✓ Forwarding port ${Q} to sandbox ${n} in the background`)
    expect((await getOk(Q)).status).toBe(200)
    const d = await cli(['sandbox', 'delete', n])
    expect(d.stderr).toContain(`✓ Stopped forward of port ${Q} for sandbox ${n}`)
    expect(d.stdout).toBe(`✓ Deleted sandbox ${n}\n`)
    expect(await get(Q)).toEqual({ error: 'ECONNREFUSED' })
  })
})
