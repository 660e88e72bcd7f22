import { describe, it, expect } from 'vitest'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, writeFileSync, chmodSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildProgram } from '../../src/cli/program.js'
import { CliContext } from '../../src/cli/context.js'
import { bashScript, completionTree, fishScript, zshScript } from '../../src/cli/completions.js'

/** Completion scripts are generated from the commander tree; the bash one is run for real. */
const program = buildProgram(new CliContext({ PODSHELL_HOME: '/nonexistent' }, { stdout: () => {}, note: () => {} }))
const tree = completionTree(program)

/** Runs the generated bash completion for `words` (the last one being completed) with a stub `podshell`. */
function complete(words: string[]): string[] {
  const dir = mkdtempSync(join(tmpdir(), 'psh-compl-'))
  writeFileSync(join(dir, 'podshell'), '#!/bin/sh\n[ "$1 $2 $3" = "sandbox list --names" ] && printf "alpha\\nbeta\\n"\n[ "$1 $2 $3" = "provider list --names" ] && printf "gh-prov\\n"\nexit 0\n')
  chmodSync(join(dir, 'podshell'), 0o755)
  writeFileSync(join(dir, 'c.bash'), bashScript(tree, 'podshell'))
  const script = `source ${dir}/c.bash; COMP_WORDS=(podshell ${words.map(w => `'${w}'`).join(' ')}); COMP_CWORD=${words.length}; _podshell_complete; printf '%s\\n' "\${COMPREPLY[@]}"`
  return execFileSync('bash', ['-c', script], { env: { PATH: `${dir}:/usr/bin:/bin` }, encoding: 'utf8' }).split('\n').filter(Boolean).sort()
}

describe('completions', () => {
  it('the tree has every verb, with aliases', () => {
    const root = tree.find(n => n.path === '')!
    for (const v of ['sandbox', 'sb', 'policy', 'pol', 'provider', 'status', 'completions', 'logs', 'gateway']) expect(root.subs).toHaveProperty(v)
    expect(tree.find(n => n.path === 'sandbox exec')!.flags).toContain('--no-login-shell')
  })

  it('bash: verbs, subverbs through an alias, flags, sandbox and provider names, choices', () => {
    expect(complete(['sta'])).toEqual(['start', 'status'].filter(x => x.startsWith('sta') && x !== 'start'))
    expect(complete(['sb', 'cr'])).toEqual(['create'])
    expect(complete(['sandbox', 'get', ''])).toEqual(['alpha', 'beta'])
    expect(complete(['sandbox', 'exec', '-n', ''])).toEqual(['alpha', 'beta'])
    expect(complete(['sandbox', 'create', '--provider', ''])).toEqual(['gh-prov'])
    expect(complete(['sandbox', 'list', '-o', ''])).toEqual(['json', 'table', 'yaml'])
    expect(complete(['sandbox', 'exec', '--no-l'])).toEqual(['--no-login-shell'])
    expect(complete(['completions', ''])).toEqual(['bash', 'fish', 'zsh'])
    // a value-taking flag's value is skipped when finding the command path
    expect(complete(['sandbox', 'exec', '--workdir', '/tmp', '--t'])).toEqual(['--timeout', '--tty'])
  })

  it('zsh and fish scripts are generated from the same tree', () => {
    expect(zshScript(tree, 'podshell')).toMatch(/^#compdef podshell\n/)
    const fish = fishScript(tree, 'podshell')
    expect(fish).toContain("complete -c podshell -n 'test (__podshell_path) = '\\''sandbox exec'\\''' -l 'no-login-shell'")
    expect(fish).toContain('sandbox list --names')
  })
})
