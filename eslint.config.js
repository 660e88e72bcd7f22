// ESLint (flat config) for podshell: `npm run lint`, run by .ci/run before the tests.
// TypeScript: typescript-eslint's recommended type-checked rules and a few more that catch real bugs
// in a process-spawning runtime (a promise nobody awaits is a podman call whose failure is lost; an
// async callback where a sync one is expected runs unchecked); the few turned off say why. Type information comes
// from tsconfig.lint.json (src/ and test/). Formatting is Prettier's (`npm run format:check`), not
// ESLint's: no stylistic rules here.
import js from '@eslint/js'
import { defineConfig } from 'eslint/config'
import globals from 'globals'
import tseslint from 'typescript-eslint'

export default defineConfig(
  {
    ignores: ['dist/**', 'node_modules/**', 'test-results/**', 'bench/results/**', '.test-home/**', 'images/**', 'seccomp/**'],
  },
  js.configs.recommended,
  {
    // Plain JavaScript: the build, bench and report scripts run under Node.
    files: ['**/*.{js,mjs}'],
    languageOptions: { globals: globals.node },
  },
  {
    files: ['**/*.ts'],
    extends: [tseslint.configs.recommendedTypeChecked],
    languageOptions: {
      globals: globals.node,
      parserOptions: { project: './tsconfig.lint.json', tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      // More type-aware rules that catch real bugs and cost nothing extra (one program for the tree).
      '@typescript-eslint/only-throw-error': 'error',
      '@typescript-eslint/prefer-promise-reject-errors': 'error',
      '@typescript-eslint/return-await': ['error', 'in-try-catch'],
      '@typescript-eslint/switch-exhaustiveness-check': ['error', { considerDefaultExhaustiveForUnions: true }],
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: { arguments: false, attributes: false } }],
      // Off, with reasons:
      // - the code writes `xs[i]!` as if noUncheckedIndexedAccess were on (it says "this exists");
      //   this rule would strip those 200-odd marks, which tell the reader something.
      '@typescript-eslint/no-unnecessary-type-assertion': 'off',
      // - `async` on a function without await is deliberate here (an interface wants a promise, and
      //   a throw must become a rejection); removing it would change behaviour.
      '@typescript-eslint/require-await': 'off',
      // tsc (noUnusedLocals/Parameters) already reports unused names in src/; here `_x` marks intent.
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
    },
  },
  {
    // Tests read podshell's JSON output and podman's as `any` and assert on it: the no-unsafe-*
    // family would want a type for every parsed document. Everything else applies.
    files: ['test/**/*.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
    },
  },
)
