// For bench/cli.ts: a program that only imports ratelimit.ts.
import '../ratelimit.ts';
