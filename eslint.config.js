/**
 * Lint: the few rules that catch real bugs here, not a style guide (the formatter owns layout).
 * - no-floating-promises: a promise nobody awaits loses its rejection (an unhandled rejection
 *   ends a daemon); fire-and-forget is written `void p` with a comment saying why.
 * - no-misused-promises: an async function handed to something that ignores its result (an
 *   event listener, a timer) is the same bug in another shape.
 * - consistent-type-imports: type-only imports say so (`import type`, `type X` inline), so a
 *   bundle never loads a module for its types.
 * - no-cycle (import-x): modules import each other in one direction; a type-only import does not
 *   count (it is gone at run time).
 * Type-aware rules read each package's own tsconfig through the project service.
 */
import importX from 'eslint-plugin-import-x';
import { createTypeScriptImportResolver } from 'eslint-import-resolver-typescript';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['**/node_modules/', '**/dist/', '.tsbuild/', 'packages/shared/src/gen/'] },
  {
    files: ['**/*.ts'],
    languageOptions: {
      parser: tseslint.parser,
      parserOptions: { projectService: { allowDefaultProject: ['vitest.config.ts'] }, tsconfigRootDir: import.meta.dirname },
    },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    plugins: { '@typescript-eslint': tseslint.plugin, 'import-x': importX },
    settings: {
      'import-x/resolver-next': [createTypeScriptImportResolver({ project: ['packages/*/tsconfig.json', 'test/tsconfig.json', 'bench/tsconfig.json'] })],
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/consistent-type-imports': ['error', { prefer: 'type-imports', fixStyle: 'inline-type-imports' }],
      'import-x/no-cycle': ['error', { ignoreExternal: true }],
      // the code already marks the regexes that match control characters on purpose
      'no-control-regex': 'error',
    },
  },
);
