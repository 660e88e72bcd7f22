import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { existsSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { execa } from 'execa'
import { cli, cliSpawn, uniqueName, CLI, testEnv, TEST_HOME } from '../helpers/cli.js'
import { sandboxAuditDir } from '../../src/config/paths.js'

/**
 * The exec server (native/execd.c, src/sandbox/exec-server.ts) in a real rootless sandbox: what
 * `sandbox exec` promises through it (exit codes, stdout/stderr, stdin EOF, signals, 128+n, TTY,
 * --timeout over a whole process tree), the fallback to `podman exec`, and the attacks a process
 * in the sandbox can try on the channel (it sees the FIFO dir; it must not get the key, pass for
 * the server or run anything through it).
 */
const dir = (name: string) => join(TEST_HOME, 'sandboxes', name, 'execd')

/** The command's parent inside the sandbox: the server's session process, or none (podman exec). */
const VIA = 'tr "\\0" " " < /proc/$PPID/cmdline 2>/dev/null | cut -d" " -f1'
const SERVER_BIN = '/run/podshell-execd-server'

describe('the exec server', () => {
  const name = uniqueName('execd')
  const ex = (args: string[], opts: { input?: string; env?: Record<string, string | undefined> } = {}) => cli(['sandbox', 'exec', '-n', name, ...args], opts)
  const sh = (script: string, opts: { input?: string; env?: Record<string, string | undefined> } = {}) => ex(['--', 'sh', '-c', script], opts)

  /** Until an exec goes through the server (the first one starts it in the background). */
  async function untilServed(): Promise<void> {
    for (let i = 0; i < 100; i++) {
      if ((await sh(VIA)).stdout.trim() === SERVER_BIN) return
      await new Promise(r => setTimeout(r, 200))
    }
    throw new Error('the exec server never answered')
  }

  beforeAll(async () => {
    const r = await cli(['sandbox', 'create', '--name', name, '--detach'])
    expect(r.code, r.stderr).toBe(0)
    await untilServed()
  })
  afterAll(async () => {
    await cli(['sandbox', 'delete', name])
  })

  it('is mounted execute-only and keeps its key in the host state dir only', async () => {
    const key = join(TEST_HOME, 'sandboxes', name, 'execd.key')
    expect(statSync(key).mode & 0o777).toBe(0o600)
    expect(readFileSync(key, 'latin1')).toMatch(/^[0-9a-f]{64}$/)
    const r = await sh(`ls -l ${SERVER_BIN} | cut -c1-10; ls /run/podshell-execd; cat ${SERVER_BIN} >/dev/null 2>&1; echo read=$?`)
    expect(r.stdout).toMatch(/^---x--x--x\n/)
    expect(r.stdout).not.toMatch(/execd\.key/)
    expect(r.stdout).toMatch(/read=1/)
  })

  it('returns exit codes and keeps stdout and stderr apart', async () => {
    const r = await sh(`echo out; echo err >&2; [ "$(${VIA})" = ${SERVER_BIN} ] && exit 42`)
    expect(r.code).toBe(42)
    expect(r.stdout).toBe('out\n')
    expect(r.stderr).toBe('err\n')
    expect((await ex(['--', 'true'])).code).toBe(0)
    expect((await ex(['--', 'false'])).code).toBe(1)
    const missing = await ex(['--', 'no-such-command-here'])
    expect(missing.code).toBe(127)
    expect(missing.stderr).toMatch(/no-such-command-here/)
    const wd = await ex(['--workdir', '/tmp', '--env', 'A_VAR=a b', '--', 'sh', '-c', 'pwd; echo "$A_VAR"; env | grep -c PODSHELL_EXECD'])
    expect(wd.stdout).toBe('/tmp\na b\n0\n')
  })

  it('passes stdin and its EOF', async () => {
    const r = await sh('cat; echo after-eof', { input: 'line one\nline two' })
    expect(r.code).toBe(0)
    expect(r.stdout).toBe('line one\nline twoafter-eof\n')
    const big = 'x'.repeat(3 * 1024 * 1024)
    const w = await sh('wc -c', { input: big })
    expect(w.stdout.trim()).toBe(String(big.length))
  })

  it('a command that dies of signal n exits 128+n', async () => {
    expect((await sh('kill -TERM $$')).code).toBe(143)
    expect((await sh('kill -KILL $$')).code).toBe(137)
    expect((await sh('kill -SEGV $$')).code).toBe(139)
  })

  it('forwards SIGTERM and SIGINT to the command', async () => {
    const child = cliSpawn(['sandbox', 'exec', '-n', name, '--', 'sh', '-c', `setsid sleep 321 & trap "echo got-term; exit 77" TERM; echo ready $(${VIA}); while :; do sleep 0.1; done`])
    const ready = await new Promise<string>(resolve => child.stdout!.on('data', (d: Buffer) => d.toString().includes('ready') && resolve(d.toString())))
    expect(ready).toContain(SERVER_BIN)
    child.kill('SIGTERM')
    const r = await child
    expect(String(r.stdout)).toContain('got-term')
    expect(r.exitCode).toBe(77)
    // The signal went to every process the exec started, a setsid'd one too.
    expect((await sh('ps -eo args | grep -c "[s]leep 321"')).stdout.trim()).toBe('0')
    const intr = cliSpawn(['sandbox', 'exec', '-n', name, '--', 'sh', '-c', 'echo ready; exec sleep 60'])
    await new Promise<void>(resolve => intr.stdout!.on('data', (d: Buffer) => d.toString().includes('ready') && resolve()))
    intr.kill('SIGINT')
    expect((await intr).exitCode).toBe(130)
  })

  it('gives a TTY of the caller\'s size with --tty', async () => {
    // script(1) gives the CLI a terminal of 30x100.
    const cmd = `stty rows 30 cols 100; ${process.execPath} ${CLI} sandbox exec -n ${name} --tty -- sh -c 'tty; stty size; test -t 0 && echo in-tty; echo $TERM; exit 5'`
    const r = await execa('script', ['-qec', cmd, '/dev/null'], { reject: false, env: testEnv(), extendEnv: false, stdin: 'pipe' })
    const out = String(r.stdout)
    expect(out).toMatch(/\/dev\/pts\/\d+\r\n30 100\r\nin-tty\r\n/)
    expect(out).not.toMatch(/\r\r\n/)
    expect(r.exitCode).toBe(5)
    const plain = await sh('test -t 0 || echo no-tty; test -t 1 || echo out-no-tty')
    expect(plain.stdout).toBe('no-tty\nout-no-tty\n')
  })

  it('--timeout ends every process the exec started, setsid\'d and backgrounded ones too (124)', async () => {
    const r = await ex(['--timeout', '1', '--', 'sh', '-c', 'setsid sleep 311 & (trap "" TERM HUP; exec sleep 312) & nohup sh -c "sleep 313" >/dev/null 2>&1 & sleep 314'])
    expect(r.code).toBe(124)
    const left = await sh('ps -eo args | grep -c "[s]leep 31[1-4]"')
    expect(left.stdout.trim()).toBe('0')
  })

  it('falls back to podman exec when the server is gone, then starts it again', async () => {
    // Kill the server from inside (as the agent can): the next exec still works, via podman exec.
    await sh(`for p in /proc/[0-9]*; do case "$(tr "\\0" " " < $p/cmdline 2>/dev/null)" in "${SERVER_BIN} "*) kill -9 \${p#/proc/};; esac; done; true`)
    const r = await sh(`echo fallback; ${VIA}; exit 3`)
    expect(r.code).toBe(3)
    expect(r.stdout.split('\n')[0]).toBe('fallback')
    expect(r.stdout).not.toContain(SERVER_BIN)
    await untilServed()
  })

  it('PODSHELL_EXEC_SERVER=0 uses podman exec', async () => {
    const r = await sh(`${VIA}; exit 4`, { env: { PODSHELL_EXEC_SERVER: '0' } })
    expect(r.code).toBe(4)
    expect(r.stdout).not.toContain(SERVER_BIN)
  })

  it('attack: an agent process cannot read the key from the server (non-dumpable)', async () => {
    const r = await sh(`for p in /proc/[0-9]*; do case "$(tr "\\0" " " < $p/cmdline 2>/dev/null)" in "${SERVER_BIN} "*) cat $p/environ >/dev/null 2>&1 && echo ENVIRON-READ; ls $p/fd >/dev/null 2>&1 && echo FD-READ; head -c1 $p/mem >/dev/null 2>&1 && echo MEM-READ; echo tried;; esac; done`)
    expect(r.stdout).toContain('tried')
    expect(r.stdout).not.toMatch(/ENVIRON-READ|FD-READ|MEM-READ/)
  })

  it('attack: a request forged from inside the sandbox runs nothing and ends its session', async () => {
    const program = `
import os, sys, time, secrets
d = '/run/podshell-execd'
sid = secrets.token_hex(16)
fd = os.open(d + '/req', os.O_WRONLY)
os.write(fd, (sid + '\\n').encode()); os.close(fd)
for _ in range(200):
    if os.path.exists(f'{d}/{sid}.o'): break
    time.sleep(0.01)
inp = None
while inp is None:
    try: inp = os.open(f'{d}/{sid}.i', os.O_WRONLY | os.O_NONBLOCK)
    except OSError: time.sleep(0.01)
out = os.open(f'{d}/{sid}.o', os.O_RDONLY)
hello = os.read(out, 5 + 16 + 16)
print('hello', hello[:1].decode(), len(hello))
fields = ['0', '24', '80', '', '3', 'sh', '-c', 'echo forged > /tmp/forged-ran'] 
payload = b''.join(f.encode() + b'\\0' for f in fields)
os.write(inp, b'R' + len(payload).to_bytes(4, 'big') + payload + b'\\0' * 16)
rest = b''
while True:
    b = os.read(out, 65536)
    if not b: break
    rest += b
print('answer', len(rest))
time.sleep(0.5)
print('ran' if os.path.exists('/tmp/forged-ran') else 'not-ran')
`
    const r = await ex(['--', 'python3', '-c', program])
    expect(r.stdout, r.stderr).toContain('hello H 37')
    expect(r.stdout).toContain('answer 0')
    expect(r.stdout).toContain('not-ran')
  })

  it('attack: a fake server in the sandbox is not believed; the exec runs via podman exec and it is logged', async () => {
    // The agent takes the request FIFO's name and answers with a hello, output and a status of
    // its own (it cannot tag them without the key).
    const fake = `
import os, time
d = '/run/podshell-execd'
os.unlink(d + '/req'); os.mkfifo(d + '/req', 0o600)
r = os.open(d + '/req', os.O_RDONLY)
sid = os.read(r, 33).decode().strip()
os.mkfifo(f'{d}/{sid}.i', 0o600); os.mkfifo(f'{d}/{sid}.o', 0o600)
i = os.open(f'{d}/{sid}.i', os.O_RDONLY | os.O_NONBLOCK)
o = os.open(f'{d}/{sid}.o', os.O_WRONLY)
def frame(t, p): return t + len(p).to_bytes(4, 'big') + p + b'\\0' * 16
os.write(o, frame(b'H', b'n' * 16) + frame(b'O', b'FAKE-OUTPUT\\n') + frame(b'Z', (0).to_bytes(4, 'big')))
time.sleep(1)
os.unlink(d + '/req')
`
    const f = cliSpawn(['sandbox', 'exec', '-n', name, '--', 'python3', '-u', '-c', fake.replace("r = os.open(", "print('ready')\nr = os.open(")])
    await new Promise<void>(resolve => f.stdout!.on('data', (d: Buffer) => d.toString().includes('ready') && resolve()))
    const r = await sh(`echo real-output; ${VIA}; exit 9`)
    await f
    expect(r.stdout).not.toContain('FAKE-OUTPUT')
    expect(r.stdout.split('\n')[0]).toBe('real-output')
    expect(r.code).toBe(9)
    expect(r.stderr).toMatch(/did not answer \(or failed authentication\); using podman exec/)
    const logged = await execa('grep', ['-rl', 'exec_server_forged', sandboxAuditDir(TEST_HOME, name)], { reject: false })
    expect(logged.stdout).not.toBe('')
    // The real server notices its FIFO is gone and ends; a new one takes over.
    await untilServed()
  })

})

describe('a sandbox created without the exec server (PODSHELL_EXEC_SERVER=0, or before it existed)', () => {
  const name = uniqueName('noexecd')
  afterAll(async () => {
    await cli(['sandbox', 'delete', name])
  })
  it('has no server mounts or key, and every exec goes through podman exec', async () => {
    expect((await cli(['sandbox', 'create', '--name', name, '--detach'], { env: { PODSHELL_EXEC_SERVER: '0' } })).code).toBe(0)
    expect(existsSync(dir(name))).toBe(false)
    expect(existsSync(join(TEST_HOME, 'sandboxes', name, 'execd.key'))).toBe(false)
    for (let i = 0; i < 2; i++) {
      const r = await cli(['sandbox', 'exec', '-n', name, '--', 'sh', '-c', `echo ok; ${VIA}; ls /run/podshell-execd 2>&1 >/dev/null | grep -c "No such"; exit 6`])
      expect(r.code).toBe(6)
      expect(r.stdout).toBe('ok\n1\n')
    }
  })
})
