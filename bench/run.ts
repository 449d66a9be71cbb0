// Entry point of `npm run bench`. For now it runs the file-mode cost benchmark.
await import('./filemode.ts');
