// `?raw` imports: the file's text, bundled into the build (tsup.config.ts) and read by Vite in tests.
declare module '*?raw' {
  const text: string;
  export default text;
}
