import { expect } from 'vitest'
import { PodshellError } from '../../src/errors.js'

/** The PodshellError `fn` throws; fails the test when it throws something else or nothing. */
export function errorOf(fn: () => unknown): PodshellError {
  try {
    fn()
  } catch (e) {
    expect(e).toBeInstanceOf(PodshellError)
    return e as PodshellError
  }
  throw new Error('expected a PodshellError')
}
