/** Text files imported with `?raw` (vite in tests, an esbuild plugin in scripts/build.mjs). */
declare module '*?raw' {
  const text: string;
  export default text;
}
