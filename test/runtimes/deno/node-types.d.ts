// For Deno's type check: what /// <reference types="node" /> in ratelimit.ts
// resolves to. Deno has its own types for node: modules, so nothing is needed.
export {};
