// For bench/cli.ts: a program that does nothing, to time a runtime's own start-up.
export {};
