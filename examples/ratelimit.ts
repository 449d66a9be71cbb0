// The README tells users to copy examples/redis-store.ts next to their copy
// of ratelimit.ts, so the store imports './ratelimit.ts'. In this repository
// the real file lives one directory up; this re-export lets the store run
// here unchanged, exactly as it would in a user's project.
export * from '../ratelimit.ts';
