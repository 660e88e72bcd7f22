/**
 * podshell configuration: the user's config.yaml, the enterprise file, and their merge.
 * `loadEffectiveConfig(env)` is the one entry point commands use.
 */
export * from './config.js'
export * from './enterprise.js'
export { configDir, dataDir, cacheDir, homeDir, type Env } from './paths.js'
