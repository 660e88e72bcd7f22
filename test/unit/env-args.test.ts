import { describe, it, expect } from 'vitest'
import { envArgs } from '../../src/podman/env-args.js'

describe('environment for containers', () => {
  it('passes values by name through podman\'s environment, never in argv', () => {
    const { args, podmanEnv } = envArgs({ JIRA_API_TOKEN: 'tok-123456', DAF_SESSION_NAME: 'PROJ-1' })
    expect(args).toEqual(['--env', 'JIRA_API_TOKEN', '--env', 'DAF_SESSION_NAME'])
    expect(args.join(' ')).not.toContain('tok-123456')
    expect(podmanEnv).toEqual({ JIRA_API_TOKEN: 'tok-123456', DAF_SESSION_NAME: 'PROJ-1' })
  })

  it('keeps variables podman itself reads out of its environment (PATH, XDG_*, CONTAINERS_*, proxies)', () => {
    const { args, podmanEnv } = envArgs({ PATH: '/x', XDG_RUNTIME_DIR: '/y', CONTAINERS_CONF: '/z', HTTPS_PROXY: 'http://127.0.0.1:3128', HOME: '/home/u' })
    expect(podmanEnv).toEqual({})
    expect(args).toEqual(['--env', 'PATH=/x', '--env', 'XDG_RUNTIME_DIR=/y', '--env', 'CONTAINERS_CONF=/z', '--env', 'HTTPS_PROXY=http://127.0.0.1:3128', '--env', 'HOME=/home/u'])
  })
})
