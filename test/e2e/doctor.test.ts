import { describe, expect, it } from 'vitest'
import { execa } from 'execa'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { cli, podman } from '../helpers/cli.js'

/**
 * `podshell doctor` on this machine, checked against what podman itself does here (the test runs
 * its own probes instead of trusting the doctor's).
 */
interface Report {
  ok: boolean
  has_podman: boolean
  has_docker: boolean
  has_openshell: boolean
  podman_version: string
  runtime: { name: string; reason: string; fallback: boolean; failed: { runtime: string; error: string }[] }
  checks: { id: string; name: string; status: 'ok' | 'warn' | 'fail'; detail: string; fix?: string }[]
}

async function doctorJson(env: Record<string, string | undefined> = {}): Promise<{ report: Report; code: number; stderr: string }> {
  const r = await cli(['doctor', '-o', 'json'], { env })
  return { report: JSON.parse(r.stdout) as Report, code: r.code, stderr: r.stderr }
}

/** Does crun run a container here? Same method as the runtime probe, done independently. */
async function crunWorks(): Promise<{ works: boolean; error: string }> {
  const rootfs = mkdtempSync(join(tmpdir(), 'podshell-crun-'))
  try {
    const r = await execa('podman', ['--runtime', 'crun', 'run', '--rm', '--network', 'none', '--rootfs', rootfs, '/nope'], { reject: false, stdin: 'ignore' })
    return { works: r.exitCode === 127, error: String(r.stderr) }
  } finally {
    rmSync(rootfs, { recursive: true, force: true })
  }
}

describe('podshell doctor', () => {
  it('-o json on this machine: podshell can run (exit 0) and the OCI runtime matches what podman does here', async () => {
    const { report, code, stderr } = await doctorJson()
    expect(code, stderr).toBe(0)
    expect(report.ok).toBe(true)
    expect(report.checks.filter(c => c.status === 'fail')).toEqual([])
    const crun = await crunWorks()
    if (crun.works) {
      expect(report.runtime).toMatchObject({ name: 'crun', fallback: false })
    } else {
      // This project's machines: crun 1.8 on hybrid cgroups. The doctor must report the fallback
      // and crun's own error.
      expect(report.runtime.name).toBe('runc')
      expect(report.runtime.fallback).toBe(true)
      expect(report.runtime.failed[0]!.runtime).toBe('crun')
      const crunLine = crun.error.split('\n').filter(l => l.includes('crun:')).pop()!
      expect(crunLine).toBeTruthy()
      expect(crunLine).toContain(report.runtime.failed[0]!.error)
      expect(report.checks.find(c => c.id === 'runtime')!.detail).toMatch(/^runc, fallback: crun failed: .+; runc works$/)
    }
  })

  it('reports the storage driver podman uses, the binaries on PATH and the podman version', async () => {
    const { report } = await doctorJson()
    const driver = (await podman(['info', '--format', '{{.Store.GraphDriverName}}'])).stdout.trim()
    expect(report.checks.find(c => c.id === 'storage')!.detail.split(' ')[0]).toBe(driver)
    const version = (await execa('podman', ['--version'])).stdout
    expect(version).toContain(report.podman_version)
    expect(report.has_podman).toBe(true)
    const onPath = async (b: string) => (await execa('sh', ['-c', `command -v ${b}`], { reject: false })).exitCode === 0
    expect(report.has_docker).toBe(await onPath('docker'))
    expect(report.has_openshell).toBe(await onPath('openshell'))
  })

  it('the cgroup check says what happens to rootless limits on this host', async () => {
    const { report } = await doctorJson()
    const c = report.checks.find(x => x.id === 'cgroups')!
    // What podman itself says about --memory here (independent of the doctor's trial).
    const r = await podman(['run', '--rm', '--network', 'none', '--memory', '64m', 'localhost/podshell-sandbox:latest', 'true'])
    if (/limits are not supported and ignored/i.test(r.stderr)) {
      expect(c.status).toBe('warn')
      expect(c.detail).toMatch(/ignored/)
    } else if (r.code === 0) {
      expect(c.detail).toMatch(/work|not delegated/)
    } else {
      expect(c.status).toBe('warn')
    }
  })

  it('table output (alias dr) lists every check and ends with the verdict', async () => {
    const r = await cli(['dr'])
    expect(r.code, r.stderr).toBe(0)
    for (const name of ['podman', 'rootless', 'subuid/subgid', 'OCI runtime', 'storage driver', 'network helpers', 'seccomp', 'cgroups / resource limits', 'XDG_RUNTIME_DIR', 'images']) {
      expect(r.stdout).toMatch(new RegExp(`^${name.replace(/[/]/g, '\\/')}\\s+(OK|WARN|FAIL)\\s`, 'm'))
    }
    expect(r.stdout).toMatch(/podshell can run on this host/)
  })

  it('exits 1 when a check fails: a podman binary that does not exist', async () => {
    const { report, code } = await doctorJson({ PODSHELL_PODMAN: '/nonexistent/podman' })
    expect(code).toBe(1)
    expect(report.ok).toBe(false)
    expect(report.checks.find(c => c.id === 'podman')).toMatchObject({ status: 'fail', detail: expect.stringMatching(/\/nonexistent\/podman/) })
  })

  it('exits 1 when the seccomp profile is missing (the agent would run unfiltered)', async () => {
    const { report, code } = await doctorJson({ PODSHELL_SECCOMP_PROFILE: '/nonexistent/seccomp.json' })
    expect(code).toBe(1)
    expect(report.checks.find(c => c.id === 'seccomp')).toMatchObject({ status: 'fail', detail: expect.stringMatching(/nonexistent\/seccomp\.json/) })
  })
})
